//! Cutting one node off on the loopback with nftables (needs root and `nft`): its gossip port
//! gets no datagrams or connections, and its own process (matched by group ID) can reach neither
//! the other members' gossip ports nor the upstream's sshd. Dropping the [`Cut`] heals it.

use std::process::Command;

/// An nftables table holding the cut; removed on drop.
pub struct Cut {
    table: String,
}

fn nft(args: &[&str]) -> std::process::Output {
    Command::new("nft")
        .args(args)
        .output()
        .expect("run nft (install nftables; needs root)")
}

impl Cut {
    /// Cuts the node gossiping on `port` whose process runs with group `gid` off from `peers`
    /// (gossip ports) and from `upstream` (a TCP port).
    pub fn new(port: u16, gid: u32, peers: &[u16], upstream: u16) -> Self {
        let table = format!("mirrorfarm_test_{}_{port}", std::process::id());
        let peers: Vec<String> = peers.iter().map(u16::to_string).collect();
        let peers = peers.join(", ");
        let rules = format!(
            "table inet {table} {{
  chain input {{
    type filter hook input priority -10; policy accept;
    udp dport {port} drop
    tcp dport {port} reject with tcp reset
  }}
  chain output {{
    type filter hook output priority -10; policy accept;
    meta skgid {gid} udp dport {{ {peers} }} drop
    meta skgid {gid} tcp dport {{ {peers}, {upstream} }} reject with tcp reset
  }}
}}
"
        );
        let file = std::env::temp_dir().join(format!("{table}.nft"));
        std::fs::write(&file, rules).expect("write nft rules");
        let out = nft(&["-f", file.to_str().expect("utf8 path")]);
        let _ = std::fs::remove_file(&file);
        assert!(
            out.status.success(),
            "nft: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { table }
    }
}

impl Drop for Cut {
    fn drop(&mut self) {
        let _ = nft(&["delete", "table", "inet", &self.table]);
    }
}
