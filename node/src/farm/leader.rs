//! Who fetches a repository from the upstream: among the live members, the one with the highest
//! rendezvous hash of (node ID, repository). Every member computes the same answer from the same
//! view, and when a member goes only its repositories move.

use sha2::{Digest, Sha256};

/// The leader of `repo` among `members` (node IDs); `None` when there are none.
pub fn leader_of<'a>(repo: &str, members: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    members.into_iter().max_by_key(|id| {
        let mut h = Sha256::new();
        h.update(id.as_bytes());
        h.update([0]);
        h.update(repo.as_bytes());
        <[u8; 32]>::from(h.finalize())
    })
}

/// The member leading `repo` when it is another node than this one: its node ID and farm
/// (gossip) address.
pub fn remote_leader(
    farm: &crate::farm::Farm,
    repo: &str,
) -> Option<(String, std::net::SocketAddr)> {
    let view = farm.view.read();
    let members = &view.as_ref()?.members;
    let leader = leader_of(repo, members.iter().map(|m| m.node_id.as_str()))?;
    let m = members.iter().find(|m| m.node_id == leader)?;
    if m.this_node {
        return None;
    }
    Some((m.node_id.clone(), m.gossip?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendezvous_is_stable_and_spreads() {
        let members = ["a", "b", "c"];
        let repos: Vec<String> = (0..60).map(|i| format!("P/r{i}")).collect();
        let leaders: Vec<&str> = repos
            .iter()
            .map(|r| leader_of(r, members).expect("leader"))
            .collect();
        for m in members {
            assert!(
                leaders.iter().filter(|l| **l == m).count() >= 10,
                "{m} leads too few"
            );
        }
        // Removing a member moves only the repositories it led.
        for (r, l) in repos.iter().zip(&leaders) {
            let after = leader_of(r, ["a", "b"]).expect("leader");
            if *l != "c" {
                assert_eq!(after, *l);
            }
        }
        assert_eq!(leader_of("P/r", Vec::<&str>::new()), None);
    }
}
