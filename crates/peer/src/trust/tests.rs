//! The trust store's tests: parsing, hand edits, rotation, forget and standing.

use super::*;

fn id(n: u8) -> PeerId {
    PeerId::from_bytes([n; 32])
}

fn entry(n: u8) -> PeerEntry {
    PeerEntry {
        id: id(n),
        name: format!("box-{n}"),
        role: Role::Observer,
        added: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        addresses: vec!["10.0.0.2:7447".into()],
        previous: vec![],
    }
}

#[test]
fn round_trips_through_toml() {
    let mut s = TrustStore::default();
    s.pin(entry(1));
    s.pin(entry(2));
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_100);
    assert!(s.forget(&id(2), now));
    assert_eq!(s.rotate(&id(1), id(3), &id(200), now, Duration::from_secs(7 * 86400)), Ok(()));
    let text = s.to_toml();
    let back = TrustStore::parse(Path::new("peers.toml"), &text).unwrap();
    assert_eq!(back, s);
    assert!(matches!(back.standing(&id(3), now), Standing::Pinned(_)));
    assert!(matches!(back.standing(&id(1), now), Standing::Previous(_)));
    let later = now + Duration::from_secs(8 * 86400);
    assert_eq!(back.standing(&id(1), later), Standing::Stranger);
    assert_eq!(back.standing(&id(2), now), Standing::Forgotten);
    assert_eq!(back.standing(&id(9), now), Standing::Stranger);
    // The rotated entry is one peer with two keys, also once the grace period is over.
    assert_eq!(back.keys_of(&id(1)), [id(3), id(1)]);
    assert_eq!(back.keys_of(&id(3)), [id(3), id(1)]);
    assert_eq!(back.entry_of(&id(1)).map(|e| e.id), Some(id(3)));
    assert_eq!(back.keys_of(&id(9)), [id(9)]);
}

#[test]
fn errors_name_line_and_column() {
    let text = format!(
        "[[peer]]\nid = \"{}\"\nrole = \"observer\"\nadded = \"2026-01-01T00:00:00Z\"\nnmae = \"x\"\n",
        id(1)
    );
    let err = TrustStore::parse(Path::new("/s/peers.toml"), &text).unwrap_err().to_string();
    assert!(err.starts_with("/s/peers.toml:"), "{err}");
    assert!(err.contains("nmae"), "{err}");
    let text = "[[peer]]\nid = \"ABCD\"\nrole = \"observer\"\nadded = \"2026-01-01T00:00:00Z\"\n";
    let err = TrustStore::parse(Path::new("p"), text).unwrap_err().to_string();
    assert!(err.starts_with("p:2:6: error: invalid peer id"), "{err}");
    let text = format!(
        "[[peer]]\nid = \"{}\"\nrole = \"boss\"\nadded = \"2026-01-01T00:00:00Z\"\n",
        id(1)
    );
    let err = TrustStore::parse(Path::new("p"), &text).unwrap_err().to_string();
    assert!(err.starts_with("p:3:"), "{err}");
}

const WEEK: Duration = Duration::from_secs(7 * 86400);

#[test]
fn a_rotation_onto_a_known_key_is_refused() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_100);
    let mut s = TrustStore::default();
    s.pin(entry(1));
    s.pin(entry(2));
    s.forget(&id(4), now);
    let before = s.clone();
    for (new, why) in [
        (id(200), RotateRefusal::OwnKey),
        (id(2), RotateRefusal::Taken),
        (id(1), RotateRefusal::Taken),
        (id(4), RotateRefusal::Forgotten),
    ] {
        assert_eq!(s.rotate(&id(1), new, &id(200), now, WEEK), Err(why));
    }
    assert_eq!(s.rotate(&id(9), id(10), &id(200), now, WEEK), Err(RotateRefusal::NotCurrent));
    assert_eq!(s, before);
    // Nor onto a key another entry rotated away from, or its own previous key.
    assert_eq!(s.rotate(&id(2), id(5), &id(200), now, WEEK), Ok(()));
    assert_eq!(s.rotate(&id(1), id(2), &id(200), now, WEEK), Err(RotateRefusal::Taken));
    let later = now + MIN_ROTATION_INTERVAL;
    assert_eq!(s.rotate(&id(5), id(2), &id(200), later, WEEK), Err(RotateRefusal::Taken));
    // Every state a rotation can leave behind parses back.
    let back = TrustStore::parse(Path::new("p"), &s.to_toml()).unwrap();
    assert_eq!(back, s);
}

#[test]
fn rotations_are_limited_in_rate_and_in_keys_kept() {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_100);
    let mut s = TrustStore::default();
    s.pin(entry(1));
    assert_eq!(s.rotate(&id(1), id(2), &id(200), t0, WEEK), Ok(()));
    let soon = t0 + MIN_ROTATION_INTERVAL - Duration::from_secs(1);
    assert_eq!(s.rotate(&id(2), id(3), &id(200), soon, WEEK), Err(RotateRefusal::TooSoon));
    let mut at = t0;
    for n in 3..10 {
        at += MIN_ROTATION_INTERVAL;
        assert_eq!(s.rotate(&id(n - 1), id(n), &id(200), at, WEEK), Ok(()));
    }
    let e = &s.peers[0];
    assert_eq!(e.id, id(9));
    let kept: Vec<PeerId> = e.previous.iter().map(|k| k.id).collect();
    assert_eq!(kept, [id(8), id(7), id(6)]);
    assert_eq!(kept.len(), MAX_PREVIOUS_KEYS);
}

#[test]
fn pinning_a_key_another_entry_rotated_away_from_keeps_the_store_valid() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_100);
    let mut s = TrustStore::default();
    s.pin(entry(1));
    s.rotate(&id(1), id(2), &id(200), now, WEEK).unwrap();
    // After the grace period the old key is a stranger, which the site key may pin.
    assert_eq!(s.standing(&id(1), now + 2 * WEEK), Standing::Stranger);
    s.pin(entry(1));
    assert!(TrustStore::parse(Path::new("p"), &s.to_toml()).is_ok());
    assert_eq!(s.keys_of(&id(2)), [id(2)]);
}

#[test]
fn a_key_in_two_entries_does_not_parse() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_100);
    let mut s = TrustStore::default();
    s.pin(entry(1));
    s.pin(entry(2));
    // Written by hand: entry 2 lists entry 1's key as a previous key.
    s.peers[1].previous.push(PreviousKey { id: id(1), until: now + WEEK });
    let err = TrustStore::parse(Path::new("p"), &s.to_toml()).unwrap_err().to_string();
    assert!(err.contains("more than one [[peer]] entry"), "{err}");
    // A previous key pinned again as an entry of its own.
    let mut s = TrustStore::default();
    let mut e = entry(1);
    e.previous.push(PreviousKey { id: id(3), until: now + WEEK });
    s.pin(e);
    s.peers.push(entry(3));
    let err = TrustStore::parse(Path::new("p"), &s.to_toml()).unwrap_err().to_string();
    assert!(err.contains("pinned twice"), "{err}");
}

#[test]
fn forgetting_by_an_old_key_forgets_the_whole_entry() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_100);
    let mut s = TrustStore::default();
    s.pin(entry(1));
    s.rotate(&id(1), id(2), &id(200), now, WEEK).unwrap();
    assert!(s.forget(&id(1), now));
    assert!(s.peers.is_empty());
    assert_eq!(s.standing(&id(2), now), Standing::Forgotten);
    assert_eq!(s.standing(&id(1), now), Standing::Forgotten);
    // A forgotten record outranks a previous key still in its grace period (hand edit).
    let mut s = TrustStore::default();
    s.pin(entry(1));
    s.rotate(&id(1), id(2), &id(200), now, WEEK).unwrap();
    s.forgotten.push(Forgotten { id: id(1), at: now });
    let s = TrustStore::parse(Path::new("p"), &s.to_toml()).unwrap();
    assert_eq!(s.standing(&id(1), now), Standing::Forgotten);
    assert!(matches!(s.standing(&id(2), now), Standing::Pinned(_)));
}

#[test]
fn pinned_and_forgotten_at_once_is_an_error() {
    let mut s = TrustStore::default();
    s.pin(entry(1));
    let mut text = s.to_toml();
    text.push_str(&format!("\n[[forgotten]]\nid = \"{}\"\nat = \"2026-01-01T00:00:00Z\"\n", id(1)));
    let err = TrustStore::parse(Path::new("p"), &text).unwrap_err().to_string();
    assert!(err.contains("both pinned and forgotten"), "{err}");
}

#[test]
fn pairing_clears_forgotten_and_save_is_atomic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peers.toml");
    let mut s = TrustStore::default();
    s.forget(&id(1), SystemTime::now());
    s.pin(entry(1));
    assert!(s.forgotten.is_empty());
    s.save(&path).unwrap();
    assert_eq!(TrustStore::load(&path).unwrap(), s);
    assert!(!dir.path().join("peers.tmp").exists());
    assert_eq!(TrustStore::load(&dir.path().join("none.toml")).unwrap(), TrustStore::default());
}
