//! The record of what this process made outside itself (process groups, network
//! namespaces), so that every way out undoes it: a normal stop, a signal, the lifeline
//! closing and a panic all end in [`undo_everything`].
//!
//! Pods tear themselves down when they are deleted and strike their entries off here; what
//! is still listed when the process ends is what a pod could not clean up in time. The
//! record is a process-wide static because the panic hook, which has no other way to reach
//! it, must be able to read it. Undoing is synchronous and idempotent.

use std::{
    collections::BTreeSet,
    sync::{Mutex, MutexGuard},
};

use rustix::process::{Pid, Signal, kill_process_group};

use crate::netns::{self, Slot};

#[derive(Default)]
struct Made {
    /// Each container runs as the leader of a process group of its own.
    process_groups: BTreeSet<i32>,
    networks: BTreeSet<Slot>,
}

static MADE: Mutex<Made> = Mutex::new(Made {
    process_groups: BTreeSet::new(),
    networks: BTreeSet::new(),
});

fn made() -> MutexGuard<'static, Made> {
    // A panic while holding the lock must not stop the panic hook from cleaning up.
    MADE.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn process_started(pgid: i32) {
    made().process_groups.insert(pgid);
}

pub fn process_reaped(pgid: i32) {
    made().process_groups.remove(&pgid);
}

pub fn network_created(slot: Slot) {
    made().networks.insert(slot);
}

pub fn network_removed(slot: Slot) {
    made().networks.remove(&slot);
}

/// Kills every recorded process group and removes every recorded network.
pub fn undo_everything() {
    let (groups, networks) = {
        let mut made = made();
        (
            std::mem::take(&mut made.process_groups),
            std::mem::take(&mut made.networks),
        )
    };
    for pgid in &groups {
        if let Some(pid) = Pid::from_raw(*pgid) {
            let _ = kill_process_group(pid, Signal::KILL);
        }
    }
    for slot in &networks {
        // Anything else that entered the namespace (nothing should) goes too.
        netns::kill_processes_in(&slot.namespace());
        if let Err(error) = netns::remove(*slot) {
            eprintln!("weir-process-kubelet: {error}");
        }
    }
    if !groups.is_empty() || !networks.is_empty() {
        eprintln!(
            "weir-process-kubelet: cleaned up {} process group(s) and {} network namespace(s)",
            groups.len(),
            networks.len()
        );
    }
}

/// Makes a panic anywhere (a pod task included) end the process after cleaning up, instead
/// of leaving one pod's task dead and the rest running half-managed.
pub fn on_panic_undo_everything_and_exit() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        undo_everything();
        std::process::exit(101);
    }));
}
