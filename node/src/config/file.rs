//! The first stage of configuration: the properties file read into [`FileConfig`], where every key
//! is known (unknown keys and duplicates are refused with their line) and nothing else is checked.

use std::path::Path;

use mirrorfarm_common::config::{read_known_keys, ConfigError, KnownKeys, Located};

/// Every key the node knows, as read from the file: nothing validated yet beyond being known.
#[derive(Debug, Default)]
pub struct FileConfig {
    /// `application.mode`
    pub application_mode: Option<Located>,
    /// `setup.displayName`
    pub display_name: Option<Located>,
    /// `setup.baseUrl`
    pub base_url: Option<Located>,
    /// `plugin.mirroring.upstream.url`
    pub upstream_url: Option<Located>,
    /// `plugin.mirroring.synchronization.interval`
    pub sync_interval: Option<Located>,
    /// `mirror.repos`
    pub repos: Option<Located>,
    /// `mirror.projects`
    pub projects: Option<Located>,
    /// `mirror.access`
    pub access: Option<Located>,
    /// `mirror.sync.concurrency`
    pub sync_concurrency: Option<Located>,
    /// `mirror.sync.timeout`
    pub sync_timeout: Option<Located>,
    /// `mirror.sync.sshPersist`
    pub ssh_persist: Option<Located>,
    /// `mirror.sync.probe`
    pub sync_probe: Option<Located>,
    /// `mirror.cache.packs.maxSize`
    pub pack_cache_max: Option<Located>,
    /// `server.address`
    pub http_address: Option<Located>,
    /// `server.port`
    pub http_port: Option<Located>,
    /// `server.headerTimeout`
    pub header_timeout: Option<Located>,
    /// `plugin.ssh.address`
    pub ssh_address: Option<Located>,
    /// `plugin.ssh.port`
    pub ssh_port: Option<Located>,
    /// `plugin.ssh.proxyProtocol`
    pub ssh_proxy_protocol: Option<Located>,
    /// `logging.format`
    pub log_format: Option<Located>,
    /// `farm.gossip.address`
    pub farm_gossip_address: Option<Located>,
    /// `farm.gossip.port`
    pub farm_gossip_port: Option<Located>,
    /// `farm.seeds`
    pub farm_seeds: Option<Located>,
    /// `farm.secret`
    pub farm_secret: Option<Located>,
    /// `farm.stage.timeout`
    pub farm_stage_timeout: Option<Located>,
    /// `mirror.admin.tokenFile`
    pub admin_token_file: Option<Located>,
    /// `mirror.admins`
    pub admins: Option<Located>,
    /// `mirror.admin.plotInterval`
    pub plot_interval: Option<Located>,
    /// `plugin.ssh.authorizedKeysFile`
    pub ssh_keys_file: Option<Located>,
    /// `plugin.ssh.authorizedKeysCommand`
    pub ssh_keys_command: Option<Located>,
    /// `plugin.ssh.maxConnections`
    pub ssh_max_connections: Option<Located>,
    /// `plugin.ssh.firstCommandTimeout`
    pub ssh_first_command_timeout: Option<Located>,
    /// `plugin.mirroring.upstream.auth.url`
    pub auth_url: Option<Located>,
    /// `plugin.mirroring.upstream.tls.caFile`
    pub upstream_ca_file: Option<Located>,
    /// `mirror.auth.cacheTtl`
    pub auth_cache_ttl: Option<Located>,
    /// `mirror.auth.offlineTtl`
    pub auth_offline_ttl: Option<Located>,
    /// `hazelcast.http.sessions`
    pub session_mode: Option<Located>,
    /// `server.session.timeout`
    pub session_timeout: Option<Located>,
    /// `mirror.push.syncWait`
    pub push_sync_wait: Option<Located>,
    /// `mirror.serve.maxProcesses`
    pub serve_max_processes: Option<Located>,
    /// `mirror.serve.queueTimeout`
    pub serve_queue_timeout: Option<Located>,
    /// `mirror.serve.maxRequestSize`
    pub serve_max_request: Option<Located>,
    /// `server.bodyTimeout`
    pub body_timeout: Option<Located>,
    /// `plugin.mirroring.upstream.lfs.url`
    pub lfs_url: Option<Located>,
    /// `mirror.lfs.prefetch`
    pub lfs_prefetch: Option<Located>,
    /// `mirror.lfs.prefetch.maxSize`
    pub lfs_prefetch_max: Option<Located>,
    /// `mirror.lfs.maxSize`
    pub lfs_max: Option<Located>,
    /// `mirror.lfs.tokenTtl`
    pub lfs_token_ttl: Option<Located>,
    /// `plugin.mirroring.upstream.type`
    pub upstream_type: Option<Located>,
    /// `plugin.mirroring.upstream.api.url`
    pub api_url: Option<Located>,
    /// `plugin.mirroring.upstream.api.tokenFile`
    pub token_file: Option<Located>,
    /// `plugin.mirroring.upstream.manifest.url`
    pub manifest_url: Option<Located>,
    /// `mirror.webhook.secretFile`
    pub webhook_secret_file: Option<Located>,
    /// `mirror.notify.url`
    pub notify_url: Option<Located>,
    /// `plugin.ssh.keys`
    pub ssh_keys: Option<Located>,
}

impl KnownKeys for FileConfig {
    fn slot(&mut self, key: &str) -> Option<&mut Option<Located>> {
        Some(match key {
            "application.mode" => &mut self.application_mode,
            "setup.displayName" => &mut self.display_name,
            "setup.baseUrl" => &mut self.base_url,
            "plugin.mirroring.upstream.url" => &mut self.upstream_url,
            "plugin.mirroring.synchronization.interval" => &mut self.sync_interval,
            "mirror.repos" => &mut self.repos,
            "mirror.projects" => &mut self.projects,
            "mirror.access" => &mut self.access,
            "mirror.sync.concurrency" => &mut self.sync_concurrency,
            "mirror.sync.timeout" => &mut self.sync_timeout,
            "mirror.sync.sshPersist" => &mut self.ssh_persist,
            "mirror.sync.probe" => &mut self.sync_probe,
            "mirror.cache.packs.maxSize" => &mut self.pack_cache_max,
            "server.address" => &mut self.http_address,
            "server.port" => &mut self.http_port,
            "server.headerTimeout" => &mut self.header_timeout,
            "plugin.ssh.address" => &mut self.ssh_address,
            "plugin.ssh.port" => &mut self.ssh_port,
            "plugin.ssh.proxyProtocol" => &mut self.ssh_proxy_protocol,
            "logging.format" => &mut self.log_format,
            "farm.gossip.address" => &mut self.farm_gossip_address,
            "farm.gossip.port" => &mut self.farm_gossip_port,
            "farm.seeds" => &mut self.farm_seeds,
            "farm.secret" => &mut self.farm_secret,
            "farm.stage.timeout" => &mut self.farm_stage_timeout,
            "mirror.admin.tokenFile" => &mut self.admin_token_file,
            "mirror.admins" => &mut self.admins,
            "mirror.admin.plotInterval" => &mut self.plot_interval,
            "plugin.ssh.authorizedKeysFile" => &mut self.ssh_keys_file,
            "plugin.ssh.authorizedKeysCommand" => &mut self.ssh_keys_command,
            "plugin.ssh.maxConnections" => &mut self.ssh_max_connections,
            "plugin.ssh.firstCommandTimeout" => &mut self.ssh_first_command_timeout,
            "plugin.mirroring.upstream.auth.url" => &mut self.auth_url,
            "plugin.mirroring.upstream.tls.caFile" => &mut self.upstream_ca_file,
            "mirror.auth.cacheTtl" => &mut self.auth_cache_ttl,
            "mirror.auth.offlineTtl" => &mut self.auth_offline_ttl,
            "hazelcast.http.sessions" => &mut self.session_mode,
            "server.session.timeout" => &mut self.session_timeout,
            "mirror.push.syncWait" => &mut self.push_sync_wait,
            "mirror.serve.maxProcesses" => &mut self.serve_max_processes,
            "mirror.serve.queueTimeout" => &mut self.serve_queue_timeout,
            "mirror.serve.maxRequestSize" => &mut self.serve_max_request,
            "server.bodyTimeout" => &mut self.body_timeout,
            "plugin.mirroring.upstream.lfs.url" => &mut self.lfs_url,
            "mirror.lfs.prefetch" => &mut self.lfs_prefetch,
            "mirror.lfs.prefetch.maxSize" => &mut self.lfs_prefetch_max,
            "mirror.lfs.maxSize" => &mut self.lfs_max,
            "mirror.lfs.tokenTtl" => &mut self.lfs_token_ttl,
            "plugin.mirroring.upstream.type" => &mut self.upstream_type,
            "plugin.mirroring.upstream.api.url" => &mut self.api_url,
            "plugin.mirroring.upstream.api.tokenFile" => &mut self.token_file,
            "plugin.mirroring.upstream.manifest.url" => &mut self.manifest_url,
            "mirror.webhook.secretFile" => &mut self.webhook_secret_file,
            "mirror.notify.url" => &mut self.notify_url,
            "plugin.ssh.keys" => &mut self.ssh_keys,
            _ => return None,
        })
    }
}

impl FileConfig {
    /// Reads the file: syntax errors, unknown keys and duplicates are refused with their line.
    pub fn parse(file: &Path, text: &str) -> Result<Self, ConfigError> {
        read_known_keys(file, text, "a node")
    }
}
