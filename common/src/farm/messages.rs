//! The farm channel's messages (JSON bodies), typed once for nodes and the load balancer.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// What a joiner sends to [`crate::farm::JOIN`].
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JoinRequest {
    /// The joiner's node ID (or load balancer ID).
    pub node_id: String,
    /// 32 random bytes, hex.
    pub nonce: String,
    /// HMAC proof of the farm secret, hex (see [`crate::farm::proof`]).
    pub proof: String,
    /// Digests of its farm configuration keys.
    pub config: BTreeMap<String, String>,
    /// `node` (default) or `lb`.
    #[serde(default)]
    pub role: Role,
}

/// Who asks to join.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A mirror node: gets the whole farm identity.
    #[default]
    Node,
    /// A load balancer: gets the farm ID, the CA certificate and a client certificate.
    Lb,
}

/// What a member answers a joiner.
#[derive(Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JoinAnswer {
    /// Why the joiner was refused, when it was.
    pub refused: Option<String>,
    /// The member's HMAC proof, hex.
    pub proof: Option<String>,
    /// Farm ID.
    pub farm_id: Option<String>,
    /// The farm's upstream private key (OpenSSH PEM; nodes only).
    pub upstream_key: Option<String>,
    /// The farm CA's private key (PEM; nodes only).
    pub ca_key: Option<String>,
    /// The farm CA's certificate (PEM).
    pub ca_cert: Option<String>,
    /// A client certificate issued to a load balancer (PEM; load balancers only).
    pub client_cert: Option<String>,
    /// Its private key (PEM; load balancers only).
    pub client_key: Option<String>,
}

impl std::fmt::Debug for JoinAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys.
        f.debug_struct("JoinAnswer")
            .field("refused", &self.refused)
            .field("farm_id", &self.farm_id)
            .finish_non_exhaustive()
    }
}

/// The farm's identity as a member hands it to a joining node.
#[derive(Clone)]
pub struct FarmIdentity {
    /// Farm ID.
    pub farm_id: String,
    /// Upstream private key (OpenSSH PEM).
    pub upstream_key: String,
    /// CA private key (PEM).
    pub ca_key: String,
}

/// What a load balancer gets for joining.
pub struct LbWelcome {
    /// Farm ID.
    pub farm_id: String,
    /// The farm CA certificate (PEM).
    pub ca_cert: String,
    /// Its client certificate (PEM), for describing members.
    pub client_cert: String,
    /// That certificate's key (PEM).
    pub client_key: String,
}

/// A member's answer at [`crate::farm::DESCRIBE`]: where it serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Description {
    /// Node ID.
    pub node_id: String,
    /// HTTP listener as the farm reaches it.
    pub http: SocketAddr,
    /// SSH listener as the farm reaches it.
    pub ssh: SocketAddr,
}

/// A sync passed on to a member at [`crate::farm::SYNC`] (a trigger for the repository's leader,
/// or a leader's word that it staged a new state): never passed on again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyncNudge {
    /// Project key.
    pub project: String,
    /// Repository slug.
    pub repo: String,
}

/// A load balancer's certificate, as it reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LbCertificate {
    /// Its subject (`CN=…`).
    pub subject: String,
    /// End of validity (Unix seconds).
    pub not_after: i64,
    /// SHA-256 fingerprint of the DER certificate (`AB:CD:…`).
    pub sha256: String,
}

/// One backend as a load balancer sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LbBackend {
    /// The backend's label (`<node>@host:port`).
    pub label: String,
    /// Its node ID, once checked.
    pub node_id: String,
    /// In rotation.
    pub healthy: bool,
    /// Its state word at the last check.
    pub state: String,
    /// The last check's error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Its `setup.baseUrl`.
    #[serde(default)]
    pub base_url: String,
}

/// What a load balancer tells the farm of itself ([`crate::farm::LB_REPORT`]); the sender is
/// the load balancer its farm certificate names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LbReport {
    /// `lb.hostname`: the farm's one hostname.
    pub hostname: String,
    /// Its HTTPS port.
    pub https_port: u16,
    /// The certificate it serves.
    pub certificate: LbCertificate,
    /// Its backends.
    pub backends: Vec<LbBackend>,
    /// mirrorfarm version.
    pub version: String,
}

/// One repository of a listing: `PROJECT/repo`, and the upstream's fingerprint of its refs when
/// the listing has one (a grokmirror manifest's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedRepo {
    /// `PROJECT/repo`.
    pub id: String,
    /// SHA-1 of `git show-ref`'s output upstream, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

/// The repositories to mirror, as one member listed them for the farm ([`crate::farm::INVENTORY`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// The repositories.
    pub repos: Vec<ListedRepo>,
    /// Some selected project could not be listed (and was not before): nothing is to be removed.
    #[serde(default)]
    pub incomplete: bool,
    /// The admin page's selection it was listed with (`<written ms>:<member>`); none: the
    /// properties file's. A member whose selection differs lists for itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selection: Option<String>,
}

/// A member's word, sent to every other member the moment it stages a new state of a
/// repository ([`crate::farm::STAGED`]), so the farm's consistent flip need not wait for gossip
/// to carry it; a member that gets it from the repository's leader fetches that state at once.
/// Unknown fields are ignored (a later version may add some).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StagedNotice {
    /// Project key.
    pub project: String,
    /// Repository slug.
    pub repo: String,
    /// Hash of the staged ref map (what gossip's staged key carries).
    pub refs_hash: String,
    /// The branch HEAD names in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
    /// When the sender staged it (its clock, µs since the epoch): of two words about one
    /// repository from one member, the later one counts, whatever order they arrive in.
    #[serde(default)]
    pub staged_at_us: u64,
}

/// A session as members hold and replicate it (the cookie value itself is never sent: only its
/// SHA-256).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRecord {
    /// SHA-256 of the cookie's session part, hex.
    pub key: String,
    /// Who authenticated.
    pub user: String,
    /// Created, ms since the epoch.
    pub created_ms: i64,
    /// Last used, ms since the epoch.
    pub last_used_ms: i64,
    /// Repositories (`PROJECT/repo`) the user may read, with when that grant expires (ms since the
    /// epoch).
    pub grants: BTreeMap<String, i64>,
    /// Ended (logged out or expired); kept a while so every member hears of it.
    #[serde(default)]
    pub removed: bool,
}

/// Sessions sent between members.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionBatch {
    /// The records.
    pub sessions: Vec<SessionRecord>,
}

/// Which of these LFS objects a member holds for a repository, or is downloading from the
/// upstream ([`crate::farm::LFS_HAVE`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LfsHave {
    /// Project key.
    pub project: String,
    /// Repository slug.
    pub repo: String,
    /// The object IDs asked about.
    pub oids: Vec<String>,
}

/// A member's answer to [`LfsHave`]: the ones it holds or is downloading.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LfsHaveAnswer {
    /// Held or on their way.
    pub have: Vec<String>,
}

/// Asks a repository's leader to download an LFS object from the upstream
/// ([`crate::farm::LFS_FETCH`]): the farm's one download of it. The action may carry the
/// credentials of the user whose request started it; it is used once and never kept.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LfsFetch {
    /// Project key.
    pub project: String,
    /// Repository slug.
    pub repo: String,
    /// Object ID.
    pub oid: String,
    /// Its size.
    pub size: u64,
    /// Where the upstream serves it (its download action), if the asker has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
    /// The action's headers.
    #[serde(default)]
    pub header: std::collections::BTreeMap<String, String>,
}

impl std::fmt::Debug for LfsFetch {
    /// The action's header values may be a user's credentials: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LfsFetch")
            .field("project", &self.project)
            .field("repo", &self.repo)
            .field("oid", &self.oid)
            .field("size", &self.size)
            .field("header", &self.header.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}
