//! Separate hosts on one machine: a network namespace per host, each joined by a veth pair to a
//! bridge in the test's own namespace (which has an address on it too, so the harness reaches
//! every host directly, the way an operator's monitoring would). Needs root and iproute2; the
//! namespaces, links and any cuts go when the [`Topology`] is dropped.
//!
//! A cut is then a host's: its packets stop, both ways (nothing answers with a reset, as a closed
//! port on a shared loopback does), while its own processes keep their own loopback. A process
//! killed on a host is refused by that host's kernel, as on a real one.

use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// Where a process of the harness runs: the test's own loopback, or a host of a [`Topology`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// The network namespace (`None`: the test's own).
    pub netns: Option<String>,
    /// Its address.
    pub ip: IpAddr,
}

impl Default for Host {
    fn default() -> Self {
        Self::loopback()
    }
}

impl Host {
    /// 127.0.0.1 in the test's own namespace.
    pub fn loopback() -> Self {
        Self {
            netns: None,
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }

    /// A command running `program` on this host.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        match &self.netns {
            None => Command::new(program),
            Some(ns) => {
                // `ip netns exec` execs the program itself: the child's PID is the program's.
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(program);
                c
            }
        }
    }

    /// Runs a shell script on this host (for `nft -f -` and the like); panics if it fails.
    pub fn run(&self, program: &str, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write;
        let mut cmd = self.command(program);
        cmd.args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("run {program}: {e}"));
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("write stdin");
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "{program} {args:?} on {:?}: {}",
            self.netns,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

/// Hosts on one bridge: `10.<a>.<b>.<n>/24`, the test's own namespace at `.254`.
pub struct Topology {
    id: String,
    bridge: String,
    hosts: Vec<(String, Host)>,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (iproute2; needs root)");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Topology {
    /// One host per name (a namespace each, in the order given: `.1`, `.2`, …).
    pub fn new(names: &[&str]) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let pid = std::process::id();
        // A bridge name and subnet nobody uses now (an earlier run killed before its cleanup may
        // have left some behind).
        let routes = Command::new("ip")
            .args(["-4", "route", "show"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let (id, bridge, a, b) = (0..256)
            .find_map(|_| {
                let n = NEXT.fetch_add(1, Ordering::Relaxed);
                let id = format!("mf{:x}{n:x}", pid & 0xffff);
                let a = 100 + ((pid + n / 256) % 100) as u8;
                let b = ((pid / 100 + n) % 256) as u8;
                let bridge = format!("{id}br");
                if routes.contains(&format!("10.{a}.{b}.0/24")) {
                    return None;
                }
                let made = Command::new("ip")
                    .args(["link", "add", &bridge, "type", "bridge"])
                    .output()
                    .is_ok_and(|o| o.status.success());
                made.then_some((id, bridge, a, b))
            })
            .expect("a free bridge name and subnet (ip link add … type bridge; needs root)");
        let harness = IpAddr::V4(Ipv4Addr::new(10, a, b, 254));
        let mut topo = Self {
            id: id.clone(),
            bridge: bridge.clone(),
            hosts: Vec::new(),
        };
        ip(&["addr", "add", &format!("{harness}/24"), "dev", &bridge]);
        ip(&["link", "set", &bridge, "up"]);
        for (i, name) in names.iter().enumerate() {
            let ns = format!("{id}-{name}");
            let (outer, inner) = (format!("{id}h{i}"), format!("{id}n{i}"));
            ip(&["netns", "add", &ns]);
            let host = Host {
                netns: Some(ns.clone()),
                ip: IpAddr::V4(Ipv4Addr::new(10, a, b, i as u8 + 1)),
            };
            topo.hosts.push((name.to_string(), host.clone()));
            ip(&[
                "link", "add", &outer, "type", "veth", "peer", "name", &inner,
            ]);
            ip(&["link", "set", &inner, "netns", &ns]);
            ip(&["link", "set", &outer, "master", &bridge, "up"]);
            ip(&["-n", &ns, "link", "set", &inner, "name", "eth0"]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", host.ip),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        // Every host knows the others by name (`ip netns exec` mounts /etc/netns/<ns>/hosts
        // over /etc/hosts).
        let mut hosts = String::from("127.0.0.1 localhost\n");
        for (name, host) in &topo.hosts {
            hosts.push_str(&format!("{} {name}.test {name}\n", host.ip));
        }
        for (_, host) in &topo.hosts {
            let dir = topo.etc(host);
            std::fs::create_dir_all(&dir).expect("mkdir /etc/netns/<ns>");
            std::fs::write(dir.join("hosts"), &hosts).expect("write hosts");
        }
        topo
    }

    /// `/etc/netns/<ns>`: files `ip netns exec` puts over /etc's.
    fn etc(&self, host: &Host) -> std::path::PathBuf {
        std::path::Path::new("/etc/netns").join(host.netns.as_deref().unwrap_or("none"))
    }

    /// The host made under `name`.
    pub fn host(&self, name: &str) -> Host {
        self.hosts
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, h)| h.clone())
            .unwrap_or_else(|| panic!("no host {name}"))
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for (_, host) in &self.hosts {
            let Some(ns) = &host.netns else { continue };
            // Whatever still runs there goes with it.
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
            let _ = std::fs::remove_dir_all(self.etc(host));
        }
        // A pair whose inner end never reached its namespace (setup failed half-way).
        for i in 0..self.hosts.len() {
            let outer = format!("{}h{i}", self.id);
            let _ = Command::new("ip")
                .args(["link", "del", &outer])
                .stderr(std::process::Stdio::null())
                .status();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
    }
}

/// Packets between a host and some others dropped (nftables in the host's namespace, both
/// directions: nothing answers, as with a pulled cable); dropping the `Cut` heals it.
pub struct Cut {
    host: Host,
    table: String,
}

impl Cut {
    /// Cuts `host` off from every address in `from`.
    pub fn new(host: &Host, from: &[IpAddr]) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let table = format!("mf_cut_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let addrs: Vec<String> = from.iter().map(IpAddr::to_string).collect();
        let addrs = addrs.join(", ");
        let rules = format!(
            "table ip {table} {{
  chain input {{
    type filter hook input priority -10; policy accept;
    ip saddr {{ {addrs} }} drop
  }}
  chain output {{
    type filter hook output priority -10; policy accept;
    ip daddr {{ {addrs} }} drop
  }}
}}
"
        );
        host.run("nft", &["-f", "-"], Some(&rules));
        Self {
            host: host.clone(),
            table,
        }
    }
}

impl Drop for Cut {
    fn drop(&mut self) {
        let mut cmd = self.host.command("nft");
        let _ = cmd.args(["delete", "table", "ip", &self.table]).status();
    }
}
