//! Pod networks: one network namespace per pod, reached from the host over a veth pair.
//!
//! Every pod gets a slot `N` of 10.233.0.0/16 cut into /30s: the host side of its veth pair,
//! `wpkN`, has the first address and the pod's end (`eth0` inside the namespace `weir-pk-N`)
//! the second, which is the pod IP. The Kubernetes API server refuses loopback addresses in
//! EndpointSlices, so backends cannot simply listen on 127.x; a namespace of their own also
//! lets every echo-basic listen on its fixed `:3000` as it would in a real pod. (10.231.x
//! belongs to `tests/src/test_host.rs`; this range stays clear of it.)
//!
//! Everything here carries a fixed name prefix, so that what a crashed run left behind is
//! recognised and removed when the next one starts ([`remove_leftovers`]); that is safe
//! because only one process kubelet runs on a machine at a time (`main` holds a lock).
//! The commands are iproute2's `ip`, run synchronously: they take milliseconds, and the
//! same code then serves the panic hook, which cannot await.

use std::{
    collections::BTreeSet,
    io::Write,
    net::Ipv4Addr,
    process::{Command, Stdio},
};

/// Every pod namespace's name starts with this.
pub const NAMESPACE_PREFIX: &str = "weir-pk-";
/// Every host-side veth's name starts with this (and then only digits).
pub const LINK_PREFIX: &str = "wpk";
/// How many pods can have a network at once: the /30s of 10.233.0.0/16.
pub const SLOTS: u16 = 1 << 14;

/// A failed `ip` command.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("cannot run ip ({0}); the process kubelet needs iproute2")]
    Spawn(#[source] std::io::Error),
    #[error("`ip {args}` failed: {stderr}")]
    Failed { args: String, stderr: String },
    #[error("all {SLOTS} pod network slots are in use")]
    Exhausted,
}

/// One pod's place in the address range: its names and addresses follow from the number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Slot(u16);

impl Slot {
    /// The `ip netns` name.
    pub fn namespace(self) -> String {
        format!("{NAMESPACE_PREFIX}{}", self.0)
    }

    /// The host-side veth (at most 3 + 5 characters: well within the kernel's 15).
    pub fn host_link(self) -> String {
        format!("{LINK_PREFIX}{}", self.0)
    }

    /// The host side's address, the pod's next hop.
    pub fn host_address(self) -> Ipv4Addr {
        Self::nth(u32::from(self.0) * 4 + 1)
    }

    /// The pod's address: its `status.podIP`.
    pub fn pod_address(self) -> Ipv4Addr {
        Self::nth(u32::from(self.0) * 4 + 2)
    }

    fn nth(offset: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 233, 0, 0)) + offset)
    }
}

/// Which slots are taken. The lowest free one is handed out, so a long run keeps reusing
/// the same few names instead of walking through the range.
#[derive(Debug, Default)]
pub struct Slots {
    /// Every slot below this has been handed out at some point…
    high_water: u16,
    /// …and these of them are free again.
    released: BTreeSet<u16>,
}

impl Slots {
    /// Takes the lowest free slot.
    pub fn take(&mut self) -> Result<Slot, NetnsError> {
        if let Some(lowest) = self.released.pop_first() {
            return Ok(Slot(lowest));
        }
        if self.high_water == SLOTS {
            return Err(NetnsError::Exhausted);
        }
        self.high_water += 1;
        Ok(Slot(self.high_water - 1))
    }

    /// Gives a slot back, once its namespace and link are gone.
    pub fn release(&mut self, slot: Slot) {
        if slot.0 < self.high_water {
            self.released.insert(slot.0);
        }
    }
}

/// Creates the namespace and the veth pair of `slot`, addressed and up, with a default route
/// through the host side.
pub fn create(slot: Slot) -> Result<(), NetnsError> {
    let (namespace, link) = (slot.namespace(), slot.host_link());
    let (host, pod) = (slot.host_address(), slot.pod_address());
    // The peer is created inside the namespace under its final name: no rename, no clash
    // between pods on the host side.
    ip_batch(
        &[],
        &format!(
            "netns add {namespace}\n\
             link add {link} type veth peer name eth0 netns {namespace}\n\
             addr add {host}/30 dev {link}\n\
             link set {link} up\n"
        ),
    )?;
    ip_batch(
        &["-n", &namespace],
        &format!(
            "addr add {pod}/30 dev eth0\n\
             link set eth0 up\n\
             link set lo up\n\
             route add default via {host}\n"
        ),
    )
}

/// Removes the veth pair and the namespace of `slot`; what is already gone is fine.
///
/// The link goes first: deleting a veth removes both ends at once, whereas a deleted
/// namespace's devices are destroyed asynchronously by the kernel, and a slot handed out
/// again right after would then find its link name still taken.
pub fn remove(slot: Slot) -> Result<(), NetnsError> {
    remove_named(&slot.namespace(), Some(&slot.host_link()))
}

fn remove_named(namespace: &str, link: Option<&str>) -> Result<(), NetnsError> {
    if let Some(link) = link {
        ip_tolerating_absence(&["link", "del", link])?;
    }
    ip_tolerating_absence(&["netns", "del", namespace])
}

/// Kills every process in, and removes, every namespace and link with our prefixes: what a
/// run that could not clean up (SIGKILL, power loss) left behind. Returns how many
/// namespaces it removed.
pub fn remove_leftovers() -> Result<usize, NetnsError> {
    let listed = ip(&["netns", "list"])?;
    let namespaces: Vec<&str> = listed
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| is_ours(name, NAMESPACE_PREFIX))
        .collect();
    for namespace in &namespaces {
        kill_processes_in(namespace);
        remove_named(namespace, None)?;
    }
    let links = ip(&["-o", "link", "show"])?;
    for link in links.lines().filter_map(link_name) {
        if is_ours(link, LINK_PREFIX) {
            ip_tolerating_absence(&["link", "del", link])?;
        }
    }
    Ok(namespaces.len())
}

/// SIGKILLs whatever runs in a namespace (`ip netns pids`).
pub fn kill_processes_in(namespace: &str) {
    let Ok(pids) = ip(&["netns", "pids", namespace]) else {
        return;
    };
    for pid in pids
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
    {
        if let Some(pid) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

/// Whether `name` is the prefix followed by a slot number (so `wpk` never matches an
/// unrelated `wpkfoo`).
fn is_ours(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The interface name of an `ip -o link show` line: `157: wpk3@if2: <BROADCAST…`.
fn link_name(line: &str) -> Option<&str> {
    let name = line.split(": ").nth(1)?;
    Some(name.split('@').next().unwrap_or(name))
}

fn ip(args: &[&str]) -> Result<String, NetnsError> {
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(NetnsError::Spawn)?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(NetnsError::Failed {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

fn ip_tolerating_absence(args: &[&str]) -> Result<(), NetnsError> {
    match ip(args) {
        Ok(_) => Ok(()),
        Err(NetnsError::Failed { stderr, .. })
            if stderr.contains("Cannot find device")
                || stderr.contains("No such file or directory")
                || stderr.contains("does not exist") =>
        {
            Ok(())
        }
        Err(error) => Err(error),
    }
}

/// `ip [options] -batch -` with `commands` on stdin: one process for several commands.
fn ip_batch(options: &[&str], commands: &str) -> Result<(), NetnsError> {
    let mut child = Command::new("ip")
        .args(options)
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NetnsError::Spawn)?;
    let written = child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(commands.as_bytes());
    let output = child.wait_with_output().map_err(NetnsError::Spawn)?;
    written.map_err(NetnsError::Spawn)?;
    if output.status.success() {
        Ok(())
    } else {
        Err(NetnsError::Failed {
            args: format!(
                "{} -batch: {}",
                options.join(" "),
                commands.replace('\n', "; ")
            ),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_slot_is_10_233_0_0_slash_30() {
        let slot = Slots::default().take().unwrap();
        assert_eq!(slot.namespace(), "weir-pk-0");
        assert_eq!(slot.host_link(), "wpk0");
        assert_eq!(slot.host_address(), Ipv4Addr::new(10, 233, 0, 1));
        assert_eq!(slot.pod_address(), Ipv4Addr::new(10, 233, 0, 2));
    }

    #[test]
    fn slots_cross_into_the_next_third_octet_after_64() {
        assert_eq!(Slot(63).pod_address(), Ipv4Addr::new(10, 233, 0, 254));
        assert_eq!(Slot(64).host_address(), Ipv4Addr::new(10, 233, 1, 1));
        assert_eq!(
            Slot(SLOTS - 1).pod_address(),
            Ipv4Addr::new(10, 233, 255, 254)
        );
    }

    #[test]
    fn the_lowest_free_slot_is_taken_and_released_ones_are_reused() {
        let mut slots = Slots::default();
        let (a, b, c) = (
            slots.take().unwrap(),
            slots.take().unwrap(),
            slots.take().unwrap(),
        );
        assert_eq!((a, b, c), (Slot(0), Slot(1), Slot(2)));
        slots.release(c);
        slots.release(b);
        assert_eq!(slots.take().unwrap(), Slot(1));
        assert_eq!(slots.take().unwrap(), Slot(2));
        assert_eq!(slots.take().unwrap(), Slot(3));
    }

    #[test]
    fn slots_run_out_after_the_whole_range() {
        let mut slots = Slots::default();
        for _ in 0..SLOTS {
            slots.take().unwrap();
        }
        assert!(matches!(slots.take(), Err(NetnsError::Exhausted)));
    }

    #[test]
    fn host_link_names_fit_the_kernel_limit() {
        assert!(Slot(SLOTS - 1).host_link().len() <= 15);
    }

    #[test]
    fn only_prefix_and_digits_are_ours() {
        assert!(is_ours("weir-pk-12", NAMESPACE_PREFIX));
        assert!(is_ours("wpk0", LINK_PREFIX));
        assert!(!is_ours("wpk", LINK_PREFIX));
        assert!(!is_ours("wpkfoo", LINK_PREFIX));
        assert!(!is_ours("weir-e2e-1234", NAMESPACE_PREFIX));
    }

    #[test]
    fn link_names_come_from_ip_o_link_lines() {
        assert_eq!(
            link_name("157: wpk3@if2: <BROADCAST,MULTICAST,UP> mtu 1500"),
            Some("wpk3")
        );
        assert_eq!(
            link_name("1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536"),
            Some("lo")
        );
    }
}
