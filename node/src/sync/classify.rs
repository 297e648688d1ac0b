//! Reading git/ssh error output into what it means for the sync engine: retry, wait for
//! authorization, stop (host key changed), or forget the repository (gone upstream).

use crate::store::SyncResult;

/// Classifies the stderr of a failed fetch (run with `LC_ALL=C`).
pub fn classify(stderr: &str) -> SyncResult {
    let s = stderr;
    if s.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || s.contains("Host key verification failed")
    {
        return SyncResult::HostKeyChanged;
    }
    if s.contains("Permission denied")
        || s.contains("Authentication failed")
        || s.contains("returned error: 403")
        || s.contains("returned error: 401")
    {
        return SyncResult::Unauthorized;
    }
    if s.contains("does not appear to be a git repository")
        || s.contains("Repository not found")
        || s.contains("returned error: 404")
        || s.contains("No such file or directory")
    {
        return SyncResult::NotFound;
    }
    if s.contains("Could not resolve hostname")
        || s.contains("Connection refused")
        || s.contains("Connection timed out")
        || s.contains("Connection reset")
        || s.contains("Connection closed")
        || s.contains("No route to host")
        || s.contains("Network is unreachable")
        || s.contains("Could not resolve host")
        || s.contains("Failed to connect")
        || s.contains("unable to access")
        || s.contains("took longer than")
        || s.contains("early EOF")
        || s.contains("the remote end hung up")
    {
        return SyncResult::Unreachable;
    }
    SyncResult::Failed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_typical_messages() {
        assert_eq!(
            classify("git@h: Permission denied (publickey).\nfatal: Could not read from remote repository."),
            SyncResult::Unauthorized
        );
        assert_eq!(
            classify("@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\nHost key verification failed."),
            SyncResult::HostKeyChanged
        );
        assert_eq!(
            classify("fatal: '/srv/P/r.git' does not appear to be a git repository"),
            SyncResult::NotFound
        );
        assert_eq!(
            classify("ssh: connect to host 127.0.0.1 port 1: Connection refused"),
            SyncResult::Unreachable
        );
        assert_eq!(classify("fatal: something odd"), SyncResult::Failed);
    }
}
