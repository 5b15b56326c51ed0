//! ALSA input against a real sequencer: the `snd-virmidi` ports of the VM lane.
//!
//! Needs root, /dev/snd/seq and a "Virtual Raw MIDI" card (tests/vm/guest-prelude loads
//! snd-virmidi); elsewhere each test prints why it skips. Run them in the VM lane:
//! `tests/vm/lane` builds this binary on the host and runs it inside one boot.

#![cfg(feature = "alsa")]

use std::process::Command;
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use vitrine_midi::alsa::{AlsaInput, PortStatus};
use vitrine_midi::{Accepted, DropReason};
use vitrine_policy::{Midi, MidiMessageKind};

/// Long enough for a loaded TCG guest; only reached when something is broken.
const PATIENCE: Duration = Duration::from_secs(60);
/// Polls the port list quickly so the replug test does not wait a second per step.
const POLL: Duration = Duration::from_millis(100);

/// The raw MIDI device (`hw:N,0`) of the virmidi card, or why the test cannot run here.
fn virmidi() -> Result<String, String> {
    if !nix_is_root() {
        return Err("needs root (ALSA devices, rmmod/modprobe)".into());
    }
    if !std::path::Path::new("/dev/snd/seq").exists() {
        return Err("no /dev/snd/seq (run in the VM lane: tests/vm/lane)".into());
    }
    let out = Command::new("amidi").arg("-l").output().map_err(|e| format!("amidi: {e}"))?;
    let list = String::from_utf8_lossy(&out.stdout);
    list.lines()
        .find(|l| l.contains("Virtual Raw MIDI"))
        .and_then(|l| l.split_whitespace().nth(1))
        .map(str::to_string)
        .ok_or_else(|| "no snd-virmidi card (modprobe snd-virmidi)".into())
}

fn nix_is_root() -> bool {
    // /proc/self/status is enough here and keeps this crate free of libc.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(str::to_string))
        .is_some_and(|l| l.split_whitespace().nth(1) == Some("0"))
}

macro_rules! skip_unless_virmidi {
    () => {
        match virmidi() {
            Ok(dev) => dev,
            Err(why) => {
                // Straight to stderr: the test harness captures eprintln! of passing tests, and
                // a skip must never look like a pass.
                use std::io::Write;
                let _ = writeln!(std::io::stderr(), "skipped: {why}");
                return;
            }
        }
    };
}

fn policy(sysex: bool) -> Midi {
    Midi {
        inputs: vec!["Virtual Raw MIDI*".into()],
        channels: vec![1, 2],
        messages: vec![MidiMessageKind::Note, MidiMessageKind::Cc],
        sysex,
        max_rate: 1000,
    }
}

fn start(midi: &Midi) -> (AlsaInput, Receiver<(u8, Vec<u8>)>) {
    let (tx, rx) = mpsc::channel();
    let sink = Box::new(move |port: u8, a: Accepted<'_>| {
        let bytes = match a {
            Accepted::Message(m) => vec![m.status(), m.data1(), m.data2()],
            Accepted::SysEx(s) => s.to_vec(),
        };
        let _ = tx.send((port, bytes));
    });
    let input = AlsaInput::start_with_poll("vitrine-test", midi, sink, POLL).expect("sequencer");
    (input, rx)
}

fn send(dev: &str, hex: &str) {
    let status = Command::new("amidi").args(["-p", dev, "-S", hex]).status().expect("amidi");
    assert!(status.success(), "amidi -p {dev} -S {hex} failed");
}

fn wait_for(input: &AlsaInput, what: &str, ok: impl Fn(&[PortStatus]) -> bool) -> Vec<PortStatus> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let status = input.status();
        if ok(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}: {status:#?}");
        std::thread::sleep(POLL);
    }
}

fn connected(status: &[PortStatus]) -> bool {
    status.iter().any(|p| p.connected)
}

#[test]
fn notes_and_control_changes_arrive_validated_and_the_rest_is_counted() {
    let dev = skip_unless_virmidi!();
    let (input, rx) = start(&policy(false));
    wait_for(&input, "the virmidi port to be connected", connected);
    // Note on ch1, CC ch2, note on ch3 (not allowed), SysEx (refused), program change ch1
    // (kind not allowed), note off ch1.
    send(&dev, "90 3C 64 B1 07 7F 92 3C 64 F0 7E 7F 06 01 F7 C0 05 80 3C 00");
    let mut got = Vec::new();
    while got.len() < 3 {
        let (port, bytes) = rx.recv_timeout(PATIENCE).expect("a message from the virmidi port");
        assert_eq!(port, 0);
        got.push(bytes);
    }
    assert_eq!(got, vec![vec![0x90, 0x3C, 0x64], vec![0xB1, 0x07, 0x7F], vec![0x80, 0x3C, 0]]);
    let status = input.status();
    let c = &status[0].counters;
    assert_eq!(c.accepted, 3);
    assert_eq!(c.dropped(DropReason::Channel), 1, "{status:#?}");
    assert_eq!(c.dropped(DropReason::SysexRefused), 1, "{status:#?}");
    assert_eq!(c.dropped(DropReason::Kind), 1, "{status:#?}");
    assert!(rx.try_recv().is_err(), "nothing else was delivered");
}

#[test]
fn sysex_passes_when_the_policy_allows_it() {
    let dev = skip_unless_virmidi!();
    let (input, rx) = start(&policy(true));
    wait_for(&input, "the virmidi port to be connected", connected);
    send(&dev, "F0 7D 01 02 03 F7 90 40 10");
    let (_, sysex) = rx.recv_timeout(PATIENCE).expect("the SysEx message");
    assert_eq!(sysex, vec![0xF0, 0x7D, 1, 2, 3, 0xF7]);
    let (_, note) = rx.recv_timeout(PATIENCE).expect("the note");
    assert_eq!(note, vec![0x90, 0x40, 0x10]);
}

/// The virmidi card as a platform device: unbinding it from its driver removes the card while
/// clients still hold it open, which is what the kernel does when a USB MIDI cable is pulled
/// (`rmmod` would refuse: our subscription holds a module reference).
const VIRMIDI_DRIVER: &str = "/sys/bus/platform/drivers/snd_virmidi";
const VIRMIDI_DEVICE: &str = "snd_virmidi.0";

fn unplug() {
    std::fs::write(format!("{VIRMIDI_DRIVER}/unbind"), VIRMIDI_DEVICE)
        .expect("unbind snd_virmidi.0");
}

fn plug() {
    std::fs::write(format!("{VIRMIDI_DRIVER}/bind"), VIRMIDI_DEVICE).expect("bind snd_virmidi.0");
}

/// Unplug and plug back: the card goes away and returns (possibly with a new sequencer client
/// number); the input notices both and delivers again, under the same port id.
#[test]
fn a_device_that_comes_back_is_reconnected() {
    let dev = skip_unless_virmidi!();
    let (input, rx) = start(&policy(false));
    wait_for(&input, "the virmidi port to be connected", connected);
    unplug();
    let gone = wait_for(&input, "the port to show as disconnected", |s| !connected(s));
    assert_eq!(gone[0].connects, 1);
    plug();
    let back = wait_for(&input, "the port to be reconnected", connected);
    assert_eq!(back[0].connects, 2, "{back:#?}");
    assert_eq!(back.len(), 1, "the returning device keeps its port id: {back:#?}");
    let dev = virmidi().unwrap_or(dev);
    send(&dev, "B0 01 40");
    let (port, bytes) = rx.recv_timeout(PATIENCE).expect("a message after the replug");
    assert_eq!((port, bytes), (0, vec![0xB0, 0x01, 0x40]));
}
