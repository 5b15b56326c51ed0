//! Fail-closed launches: a seccomp kill is named, and every refused setup step ends with a
//! clear error and without the program ever running.
//!
//! "Never ran" is observable: the visualization is `/usr/bin/touch MARKER` with MARKER in a
//! granted directory, so a marker file exists exactly when the program was executed.

mod sandbox_support;

use std::path::{Path, PathBuf};

use sandbox_support::*;

#[test]
fn seccomp_kill_names_the_syscall() {
    if !root_or_skip("seccomp_kill_names_the_syscall") {
        return;
    }
    let verify = format!("sha256 = \"{}\"", sha256(&probe()));
    let policy = Policy::new(
        "t-ptrace",
        &probe(),
        &["ptrace".into()],
        "{}",
        &verify,
        &standard_tables("nobody", ""),
    );
    // The syscall's name comes from the kernel's audit record in /dev/kmsg, which the kernel
    // rate-limits (printk_ratelimit: 10 records per 5 s, shared by the whole machine). The
    // probe's deliberate kills in the test binary run just before this one can use that burst
    // up, so start in a fresh window.
    std::thread::sleep(std::time::Duration::from_secs(6));
    let run = vitrine_run(&policy.path, &[]);
    assert!(run.stderr.contains("killed by seccomp: ptrace (101)"), "stderr: {}", run.stderr);
    // ptrace is on the never-allowed list: `policy check` would refuse it in `allow`.
    let fix = "no policy may allow \"ptrace\": it is never allowed in a vitrine sandbox";
    assert!(run.stderr.contains(fix), "no policy change named: {}", run.stderr);
    assert!(!run.stderr.contains("add \"ptrace\""), "suggests a policy check refuses");
    assert_eq!(run.code(), 128 + 31, "exit code is 128 + SIGSYS");
    assert!(!run.stdout.contains("ptrace returned"), "ptrace returned instead of killing");
}

/// A writable directory the sandbox user may write to, and the marker path inside it.
fn marker_dir() -> (tempfile::TempDir, PathBuf) {
    std::fs::create_dir_all("/var/lib/vitrine-test").expect("fixture root");
    let dir =
        tempfile::Builder::new().prefix("marker").tempdir_in("/var/lib/vitrine-test").expect("dir");
    nix::unistd::chown(dir.path(), Some(nix::unistd::Uid::from_raw(65534)), None).expect("chown");
    let marker = dir.path().join("ran");
    (dir, marker)
}

fn touch_policy(name: &str, marker: &Path, verify: &str, user: &str) -> Policy {
    let fs = format!(
        "exec = [\"/usr/bin/touch\"]\nread_write = [\"{}\"]",
        marker.parent().expect("parent").display()
    );
    let touch = Path::new("/usr/bin/touch");
    Policy::new(
        name,
        touch,
        &[marker.display().to_string()],
        "{}",
        verify,
        &standard_tables(user, &fs),
    )
}

fn touch_sha() -> String {
    format!("sha256 = \"{}\"", sha256(Path::new("/usr/bin/touch")))
}

#[test]
fn the_marker_program_runs_when_nothing_is_wrong() {
    if !root_or_skip("the_marker_program_runs_when_nothing_is_wrong") {
        return;
    }
    let (_dir, marker) = marker_dir();
    let run = vitrine_run(&touch_policy("t-touch-ok", &marker, &touch_sha(), "nobody").path, &[]);
    assert_eq!(run.code(), 0);
    assert!(marker.exists(), "touch did not run, so the refusal tests below would prove nothing");
}

#[test]
fn digest_mismatch_refuses_with_both_digests() {
    if !root_or_skip("digest_mismatch_refuses_with_both_digests") {
        return;
    }
    let (_dir, marker) = marker_dir();
    let wrong = "0".repeat(64);
    let policy = touch_policy("t-touch-sha", &marker, &format!("sha256 = \"{wrong}\""), "nobody");
    let run = vitrine_run(&policy.path, &[]);
    assert_eq!(run.code(), 1);
    assert!(run.stderr.contains(&wrong), "expected digest missing: {}", run.stderr);
    assert!(run.stderr.contains(&sha256(Path::new("/usr/bin/touch"))), "actual digest missing");
    assert!(!marker.exists(), "the program ran although verification failed");
}

#[test]
fn unknown_user_refuses() {
    if !root_or_skip("unknown_user_refuses") {
        return;
    }
    let (_dir, marker) = marker_dir();
    let run = vitrine_run(
        &touch_policy("t-touch-user", &marker, &touch_sha(), "no-such-vitrine-user").path,
        &[],
    );
    assert_eq!(run.code(), 1);
    assert!(run.stderr.contains("cannot resolve user no-such-vitrine-user"), "{}", run.stderr);
    assert!(!marker.exists());
}

#[test]
fn landlock_floor_above_the_kernel_refuses_before_exec() {
    if !root_or_skip("landlock_floor_above_the_kernel_refuses_before_exec") {
        return;
    }
    let (_dir, marker) = marker_dir();
    let policy = touch_policy("t-touch-floor", &marker, &touch_sha(), "nobody");
    // Policies cannot ask for more than the newest ABI; debug builds let tests raise the floor.
    let run = vitrine_run(&policy.path, &[("VITRINE_TEST_LANDLOCK_MIN_ABI", "200")]);
    if cfg!(debug_assertions) {
        assert_eq!(run.code(), 1);
        assert!(run.stderr.contains("step `landlock`"), "{}", run.stderr);
        assert!(run.stderr.contains("below the policy's landlock_min_abi = 200"), "{}", run.stderr);
        assert!(!marker.exists(), "the program ran below the Landlock floor");
    } else {
        eprintln!("release build: the floor cannot be raised above what a policy may say");
    }
}

#[test]
fn missing_seccomp_profile_refuses() {
    if !root_or_skip("missing_seccomp_profile_refuses") {
        return;
    }
    let (_dir, marker) = marker_dir();
    let policy = touch_policy("t-touch-prof", &marker, &touch_sha(), "nobody");
    let text = std::fs::read_to_string(&policy.path).expect("read");
    let text = text.replace("profile = \"default\"", "profile = \"/nonexistent/profile.json\"");
    std::fs::write(&policy.path, text).expect("write");
    let run = vitrine_run(&policy.path, &[]);
    assert_eq!(run.code(), 1);
    assert!(run.stderr.contains("/nonexistent/profile.json"), "{}", run.stderr);
    assert!(!marker.exists());
}

#[test]
fn bad_minisign_signature_refuses() {
    if !root_or_skip("bad_minisign_signature_refuses") {
        return;
    }
    let (dir, marker) = marker_dir();
    // A well-formed signature file for other bytes, under a key that never signed touch.
    let sig = dir.path().join("touch.minisig");
    std::fs::write(
        &sig,
        "untrusted comment: signature from minisign secret key\n\
         RUQf6LRCGA9i559r3g7V1qNyJDApGip8MfqcadIgT9CuhV3EMhHoN1mGTkUidF/z7SrlQgXdy8ofjb7bNJJylDOocrCo8KLzZwo=\n\
         trusted comment: timestamp:1556193335\tfile:test\n\
         y/rUw2y8/hOUYjZU71eHp/Wo1KZ40fGy2VJEDl34XMJM+TX48Ss/17u3IvIfbVR1FkZZSNCisQbuQY+bHwhEBg==\n",
    )
    .expect("signature");
    let verify = format!(
        "minisign_signature = \"{}\"\nminisign_keys = [\"RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3\"]",
        sig.display()
    );
    let run = vitrine_run(&touch_policy("t-touch-sig", &marker, &verify, "nobody").path, &[]);
    assert_eq!(run.code(), 1);
    assert!(run.stderr.contains("minisign") || run.stderr.contains("signature"), "{}", run.stderr);
    assert!(!marker.exists());
}
