//! The Raspberry Pi installer (`tools/pi/install.sh`, docs/pi.md), run for real into a
//! staging root: what `--dry-run` announces, that a second install changes nothing, that
//! bad flags are refused before anything is written (a missing root is created after),
//! the fleet key and the generated secrets, and that the systemd units pass
//! `systemd-analyze verify` (an ignored test: tools/test.sh installs systemd and runs it
//! with `--include-ignored`).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{convoy_bin, run_convoy};

fn installer() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/pi/install.sh")
}

/// Run the installer with the test's convoy binary: (success, stdout, stderr).
fn install(args: &[&str]) -> (bool, String, String) {
    let bin = convoy_bin();
    let out = Command::new("bash")
        .arg(installer())
        .arg("--binary")
        .arg(&bin)
        .args(args)
        .output()
        .expect("bash runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every entry under `root`: path → (mode, content or link target).
fn tree(root: &Path) -> BTreeMap<String, (u32, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (u32, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).expect("readable dir") {
            let path = entry.expect("dir entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("metadata");
            let name = path
                .strip_prefix(root)
                .expect("under root")
                .display()
                .to_string();
            let mode = meta.permissions().mode();
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).expect("link");
                out.insert(name, (mode, target.display().to_string().into_bytes()));
            } else if meta.is_dir() {
                out.insert(name, (mode, Vec::new()));
                walk(root, &path, out);
            } else {
                out.insert(name, (mode, std::fs::read(&path).expect("readable file")));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn text(root: &Path, path: &str) -> String {
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn dry_run_prints_every_action_and_writes_nothing() {
    let root = tempfile::tempdir().expect("temp dir");
    let r = root.path().to_str().expect("utf-8 temp path");
    let (ok, out, err) = install(&["--dry-run", "--root", r, "--wifi", "10.42.0.12/24"]);
    assert!(ok, "dry run failed: {err}");
    for line in [
        "would install /usr/local/bin/convoy (mode 755)",
        "would install /etc/convoy/default.toml (mode 644)",
        "would install /etc/convoy/convoy.toml (mode 600)",
        "would install /etc/convoy/fleet.key (mode 600)",
        "would install /etc/systemd/system/convoy.service (mode 644)",
        "would install /etc/udev/rules.d/99-convoy-led.rules (mode 644)",
        "would install /etc/NetworkManager/system-connections/convoy-adhoc.nmconnection (mode 600)",
        "would run udevadm control --reload-rules",
        "would run nmcli connection reload",
        "would run systemctl daemon-reload",
        "would run systemctl enable convoy.service",
    ] {
        assert!(
            out.lines().any(|l| l == line),
            "missing {line:?} in:\n{out}"
        );
    }
    assert!(
        out.lines().all(|l| l.starts_with("would ")),
        "a dry run only announces:\n{out}"
    );
    assert!(tree(root.path()).is_empty(), "the dry run wrote files");
}

#[test]
fn second_install_into_a_staging_root_changes_nothing() {
    let root = tempfile::tempdir().expect("temp dir");
    let r = root.path().to_str().expect("utf-8 temp path");
    let args = [
        "--root",
        r,
        "--wifi",
        "10.42.0.12/24",
        "--rt-priority",
        "15",
    ];
    let (ok, first, err) = install(&args);
    assert!(ok, "first install failed: {err}");
    assert!(first.contains("install /usr/local/bin/convoy"), "{first}");
    assert!(
        first.contains("skip systemctl daemon-reload (staging root)"),
        "{first}"
    );
    let before = tree(root.path());

    let (ok, second, err) = install(&args);
    assert!(ok, "second install failed: {err}");
    assert_eq!(before, tree(root.path()), "the second run changed the tree");
    for line in second.lines() {
        assert!(
            line.starts_with("unchanged ") || line.starts_with("keep "),
            "the second run acted: {line:?}\n{second}"
        );
    }

    // What was installed is what a bike needs.
    let bin = root.path().join("usr/local/bin/convoy");
    assert_eq!(before["usr/local/bin/convoy"].0 & 0o777, 0o755);
    assert_eq!(
        std::fs::read(&bin).expect("installed binary"),
        std::fs::read(convoy_bin()).expect("built binary")
    );
    let unit = text(root.path(), "etc/systemd/system/convoy.service");
    for key in [
        "ExecStart=/usr/local/bin/convoy --config %d/convoy.toml node $CONVOY_NODE_ARGS",
        "Restart=on-failure",
        "CPUSchedulingPolicy=rr",
        "CPUSchedulingPriority=15",
        "LimitRTPRIO=15",
        "SupplementaryGroups=audio dialout",
        "DeviceAllow=char-alsa rw",
    ] {
        assert!(unit.lines().any(|l| l == key), "unit lacks {key:?}");
    }
    for placeholder in ["@BINDIR@", "@LIBDIR@", "@RT_PRIORITY@"] {
        assert!(
            !unit.contains(placeholder),
            "unfilled {placeholder} in the unit"
        );
    }
    assert!(
        root.path()
            .join("etc/systemd/system/multi-user.target.wants/convoy.service")
            .symlink_metadata()
            .is_ok(),
        "convoy.service is not enabled"
    );
    let rules = text(root.path(), "etc/udev/rules.d/99-convoy-led.rules");
    for id in [
        "\"1a86\"",
        "\"0403\"",
        "\"2341\"",
        "SYMLINK+=\"convoy-led\"",
        "GROUP=\"dialout\"",
    ] {
        assert!(rules.contains(id), "udev rule lacks {id}");
    }
    let nm = "etc/NetworkManager/system-connections/convoy-adhoc.nmconnection";
    assert_eq!(
        before[nm].0 & 0o777,
        0o600,
        "NetworkManager ignores readable keyfiles"
    );
    let profile = text(root.path(), nm);
    for key in [
        "mode=adhoc",
        "ssid=convoy-mesh",
        "address1=10.42.0.12/24",
        "powersave=2",
    ] {
        assert!(profile.lines().any(|l| l == key), "profile lacks {key:?}");
    }

    // The starter configuration is one the binary accepts.
    let config = root.path().join("etc/convoy/convoy.toml");
    let (ok, shown, err) = run_convoy(&["--config", config.to_str().expect("utf-8"), "config"]);
    assert!(ok, "the installed convoy.toml is rejected: {err}");
    assert!(shown.contains("resampler = \"fast\""), "{shown}");

    // The fleet key: root only, where the unit's LoadCredential= takes it from; the
    // starter file points at the credential the service sees.
    assert_eq!(before["etc/convoy/fleet.key"].0 & 0o777, 0o600);
    let key = text(root.path(), "etc/convoy/fleet.key");
    assert_eq!(key.trim().len(), 64, "a 32-byte hex key: {key:?}");
    assert!(unit
        .lines()
        .any(|l| l == "LoadCredential=fleet.key:/etc/convoy/fleet.key"));
    // Issue #27: the bike's configuration holds the PIN and the control secret, so it is
    // root's alone too and reaches the service the same way.
    assert_eq!(before["etc/convoy/convoy.toml"].0 & 0o777, 0o600);
    assert!(unit
        .lines()
        .any(|l| l == "LoadCredential=convoy.toml:/etc/convoy/convoy.toml"));
    let starter = text(root.path(), "etc/convoy/convoy.toml");
    assert!(starter.contains("key_file = \"/run/credentials/convoy.service/fleet.key\""));
    // The web PIN and the OSC control secret: generated, in the file, printed once.
    let pin = starter
        .lines()
        .find_map(|l| l.strip_prefix("pin = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("a web PIN in the starter config");
    assert!(
        pin.len() == 6 && pin.bytes().all(|c| c.is_ascii_digit()),
        "{pin}"
    );
    let secret = starter
        .lines()
        .find_map(|l| l.strip_prefix("secret = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("an OSC control secret in the starter config");
    assert_eq!(secret.len(), 16, "{secret}");
    assert!(first.contains(&format!("web PIN: {pin} ")), "{first}");
    assert!(
        first.contains(&format!(
            "OSC control secret: {secret} (address /{secret}/convoy/play"
        )),
        "{first}"
    );
    assert!(
        !second.contains(pin) && !second.contains(secret),
        "printed twice:\n{second}"
    );
}

#[test]
fn the_fleet_key_is_generated_once_or_installed_from_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = dir.path().join("first");
    let (ok, out, err) = install(&["--root", first.to_str().expect("utf-8")]);
    assert!(ok, "{err}");
    assert!(
        out.contains("every bike of this fleet needs the same one"),
        "{out}"
    );
    // The second bike gets the first one's key.
    let key = first.join("etc/convoy/fleet.key");
    let second = dir.path().join("second");
    let (ok, out, err) = install(&[
        "--root",
        second.to_str().expect("utf-8"),
        "--key",
        key.to_str().expect("utf-8"),
    ]);
    assert!(ok, "{err}");
    assert!(!out.contains("new key"), "{out}");
    assert_eq!(
        text(&first, "etc/convoy/fleet.key"),
        text(&second, "etc/convoy/fleet.key")
    );
    // A file that holds no key is refused before anything is written.
    let bad = dir.path().join("bad.key");
    std::fs::write(&bad, "not a key\n").expect("write");
    let third = dir.path().join("third");
    let (ok, _, err) = install(&[
        "--root",
        third.to_str().expect("utf-8"),
        "--key",
        bad.to_str().expect("utf-8"),
    ]);
    assert!(!ok && err.contains("--key"), "{err}");
    assert!(!third.exists(), "a refused install created its root");
}

#[test]
fn a_reinstall_keeps_the_riders_settings() {
    let root = tempfile::tempdir().expect("temp dir");
    let r = root.path().to_str().expect("utf-8 temp path");
    assert!(install(&["--root", r]).0);
    let mine = "[sync]\nrole = \"leader\"\n";
    let path = root.path().join("etc/convoy/convoy.toml");
    std::fs::write(&path, mine).expect("edit");
    // As an older installer left it: readable by everyone.
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .expect("chmod");
    let (ok, out, err) = install(&["--root", r]);
    assert!(ok, "{err}");
    assert!(out.contains("keep /etc/convoy/convoy.toml"), "{out}");
    assert!(
        out.contains(
            "tighten /etc/convoy/convoy.toml to mode 600 (it holds the web PIN and control secret)"
        ),
        "{out}"
    );
    assert_eq!(text(root.path(), "etc/convoy/convoy.toml"), mine);
    let mode = std::fs::metadata(&path).expect("stat").permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
}

#[test]
fn mesh_profile_installs_its_service_and_settings() {
    let root = tempfile::tempdir().expect("temp dir");
    let r = root.path().to_str().expect("utf-8 temp path");
    let (ok, out, err) = install(&["--root", r, "--mesh", "10.43.0.7/16", "--channel", "11"]);
    assert!(ok, "{err}");
    assert!(out.contains("skip apt-get install") || out.contains("unchanged packages"));
    let env = text(root.path(), "etc/convoy/mesh.env");
    // Channel 11 is 2462 MHz.
    for line in [
        "MESH_FREQ=2462",
        "MESH_ADDRESS=10.43.0.7/16",
        "MESH_IFACE=wlan0",
    ] {
        assert!(env.lines().any(|l| l == line), "mesh.env lacks {line}");
    }
    let nm = text(root.path(), "etc/NetworkManager/conf.d/90-convoy-mesh.conf");
    assert!(nm.contains("unmanaged-devices=interface-name:wlan0"));
    assert_eq!(
        text(root.path(), "etc/modules-load.d/convoy-mesh.conf"),
        "batman-adv\n"
    );
    let unit = text(root.path(), "etc/systemd/system/convoy-mesh.service");
    assert!(
        unit.contains("ExecStart=/usr/local/lib/convoy/mesh.sh up"),
        "{unit}"
    );
    assert!(root.path().join("usr/local/lib/convoy/mesh.sh").is_file());
}

#[test]
fn bad_flags_are_refused_before_anything_is_written() {
    let root = tempfile::tempdir().expect("temp dir");
    let r = root.path().to_str().expect("utf-8 temp path");
    for (args, names) in [
        (vec!["--wifi", "10.42.0.300/24"], "--wifi"),
        (vec!["--wifi", "10.42.0.1"], "--wifi"),
        (
            vec!["--wifi", "10.42.0.1/24", "--mesh", "10.43.0.1/16"],
            "--mesh",
        ),
        (
            vec!["--mesh", "10.43.0.1/16", "--channel", "14"],
            "--channel",
        ),
        (vec!["--rt-priority", "99"], "--rt-priority"),
        (vec!["--prefix", "usr"], "--prefix"),
        (vec!["--bogus"], "--bogus"),
    ] {
        let mut all = vec!["--root", r];
        all.extend(args.iter());
        let (ok, _, err) = install(&all);
        assert!(!ok, "{args:?} was accepted");
        assert!(
            err.contains(names),
            "{args:?}: the error does not name {names}: {err}"
        );
    }
    assert!(
        tree(root.path()).is_empty(),
        "a refused install wrote files"
    );
    // A missing root is created, but only once every flag passed.
    let missing = root.path().join("new/bike");
    let m = missing.to_str().expect("utf-8");
    let (ok, _, err) = install(&["--root", m, "--rt-priority", "99"]);
    assert!(!ok && err.contains("--rt-priority"), "{err}");
    assert!(!missing.exists(), "a refused install created its root");
    let (ok, out, err) = install(&["--root", m]);
    assert!(ok, "{err}");
    assert!(out.lines().any(|l| l == format!("create {m}")), "{out}");
    assert!(missing.join("etc/convoy/convoy.toml").is_file());
}

#[test]
#[ignore = "needs systemd-analyze (tools/test.sh installs systemd)"]
fn units_pass_systemd_analyze_verify() {
    assert!(
        Command::new("systemd-analyze")
            .arg("--version")
            .output()
            .is_ok(),
        "systemd-analyze is missing: install systemd (tools/setup.sh --test)"
    );
    let root = tempfile::tempdir().expect("temp dir");
    let r = root.path().to_str().expect("utf-8 temp path");
    assert!(install(&["--root", r, "--mesh", "10.43.0.7/16"]).0);
    // verify checks that ExecStart= is executable on this machine: point the installed units
    // at the staging root's copies (nothing else changes).
    let mut units = Vec::new();
    for name in ["convoy.service", "convoy-mesh.service"] {
        let unit = text(root.path(), &format!("etc/systemd/system/{name}"))
            .replace("=/usr/local/", &format!("={r}/usr/local/"));
        let path = root.path().join(name);
        std::fs::write(&path, unit).expect("write unit copy");
        units.push(path);
    }
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&units)
        .current_dir(root.path())
        .output()
        .expect("systemd-analyze runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{err}"
    );
    // Unknown keys and unparsable values are only warnings: there must be none.
    assert!(
        err.trim().is_empty(),
        "systemd-analyze verify warned:\n{err}"
    );
}
