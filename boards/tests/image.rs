//! `cargo boards image` on a synthetic Raspberry Pi OS image built here: an MBR with a FAT
//! boot partition (mkfs.vfat, a `cmdline.txt` that starts firstboot) and an ext4 root
//! (mkfs.ext4 -d) holding what a Pi OS root has for the job (`/etc/passwd`, `/etc/group`,
//! the systemd unit folders). The result is read back with e2fsprogs and mtools: files with
//! the package's modes and owners, both units enabled, a config the runtime parses, the
//! first-boot settings; the arm64 binary taken out of the image runs 50 frames under
//! qemu-aarch64; the .bmap is checked by bmaptool. Bad inputs: exit 2, the file named, no
//! output left behind.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Whether `tool` runs here. Missing on CI is a failure (`.ci/run` installs it); elsewhere the
/// caller skips, saying so.
fn have(tool: &str, package: &str) -> bool {
    let ok = Command::new(tool)
        .arg(if tool == "mkfs.vfat" {
            "--help"
        } else {
            "--version"
        })
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} is missing on CI (.ci/run installs {package})"
        );
        eprintln!("{tool} not installed: test skipped (apt install {package})");
    }
    ok
}

fn have_tools() -> bool {
    [
        ("mkfs.vfat", "dosfstools"),
        ("mcopy", "mtools"),
        ("mkfs.ext4", "e2fsprogs"),
        ("debugfs", "e2fsprogs"),
        ("resize2fs", "e2fsprogs"),
        ("xz", "xz-utils"),
    ]
    .iter()
    .all(|(t, p)| have(t, p))
}

fn sh(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

const MIB: u64 = 1 << 20;

/// An ext4 (or `fs`) filesystem of `mib` MiB holding a Pi OS-like root.
fn root_fs(dir: &Path, fs_type: &str, mib: u64) -> PathBuf {
    let tree = dir.join("rootfs");
    for d in [
        "etc/systemd/system/multi-user.target.wants",
        "usr/lib/systemd/system",
        "usr/lib/aarch64-linux-gnu",
        "usr/bin",
        "usr/share/doc",
        "var/lib",
        "boot/firmware",
    ] {
        fs::create_dir_all(tree.join(d)).unwrap();
    }
    fs::write(
        tree.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/bash\npi:x:1000:1000:,,,:/home/pi:/bin/bash\n",
    )
    .unwrap();
    fs::write(
        tree.join("etc/group"),
        "root:x:0:\nvideo:x:44:pi\npi:x:1000:\n",
    )
    .unwrap();
    fs::write(tree.join("etc/hostname"), "raspberrypi\n").unwrap();
    let file = dir.join(format!("root.{fs_type}"));
    sh(Command::new(format!("mkfs.{fs_type}"))
        .args(["-q", "-F", "-b", "4096", "-d"])
        .arg(&tree)
        .arg(&file)
        .arg(format!("{mib}M")));
    file
}

/// A FAT boot filesystem of `mib` MiB with a Bookworm-like cmdline.txt.
fn boot_fs(dir: &Path, mib: u64) -> PathBuf {
    let file = dir.join("boot.fat");
    sh(Command::new("mkfs.vfat")
        .arg("-C")
        .arg(&file)
        .arg((mib * 1024).to_string()));
    let cmdline = dir.join("cmdline.txt");
    fs::write(
        &cmdline,
        "console=serial0,115200 console=tty1 root=PARTUUID=1234-02 rootfstype=ext4 fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot\n",
    )
    .unwrap();
    sh(Command::new("mcopy")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(&file)
        .arg(&cmdline)
        .arg("::cmdline.txt"));
    file
}

/// An image: an MBR, then each (type, filesystem file or zeros of a size) from 4 MiB on.
fn assemble(path: &Path, parts: &[(u8, Option<&Path>, u64)]) {
    let mut img = fs::File::create(path).unwrap();
    let mut mbr = [0u8; 512];
    let mut at = 4 * MIB;
    for (slot, (kind, file, len)) in parts.iter().enumerate() {
        let len = match file {
            Some(f) => fs::metadata(f).unwrap().len(),
            None => *len,
        };
        let e = 446 + 16 * slot;
        mbr[e + 4] = *kind;
        mbr[e + 8..e + 12].copy_from_slice(&((at / 512) as u32).to_le_bytes());
        mbr[e + 12..e + 16].copy_from_slice(&((len / 512) as u32).to_le_bytes());
        if let Some(f) = file {
            img.seek(SeekFrom::Start(at)).unwrap();
            std::io::copy(&mut fs::File::open(f).unwrap(), &mut img).unwrap();
        }
        at += len;
    }
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    img.seek(SeekFrom::Start(0)).unwrap();
    img.write_all(&mbr).unwrap();
    img.set_len(at).unwrap();
}

/// A Pi OS-like base image: 16 MiB FAT boot, a 24 MiB ext4 root.
fn base_image(dir: &Path) -> PathBuf {
    let boot = boot_fs(dir, 16);
    let root = root_fs(dir, "ext4", 24);
    let img = dir.join("raspios.img");
    assemble(&img, &[(0x0c, Some(&boot), 0), (0x83, Some(&root), 0)]);
    img
}

fn boards() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kestrel-boards"))
}

/// A file that passes for an aarch64 binary where the run fails before using it.
fn fake_binary(dir: &Path) -> PathBuf {
    let p = dir.join("kestrel-arm64");
    let mut head = vec![0u8; 64];
    head[..6].copy_from_slice(b"\x7fELF\x02\x01");
    head[18] = 0xb7;
    fs::write(&p, head).unwrap();
    p
}

/// The aarch64 `kestrel` to install: $KESTREL_IMAGE_TEST_BINARY (must exist when set), or the
/// debug cross build `cargo test -p kestrel-runtime --target aarch64-unknown-linux-gnu`
/// leaves, or CI's rpi4 bundle build.
fn arm64_kestrel() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KESTREL_IMAGE_TEST_BINARY") {
        let p = PathBuf::from(p);
        assert!(
            p.exists(),
            "KESTREL_IMAGE_TEST_BINARY={} does not exist",
            p.display()
        );
        return Some(p);
    }
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    [
        target.join("aarch64-unknown-linux-gnu/debug/kestrel"),
        target.join("boards/rpi4/aarch64-unknown-linux-gnu/bundle-ci/kestrel"),
    ]
    .into_iter()
    .find(|p| p.exists())
}

/// The partition in `slot` of an image: (offset, length) in bytes.
fn partition(img: &Path, slot: usize) -> (u64, u64) {
    let mut mbr = [0u8; 512];
    fs::File::open(img).unwrap().read_exact(&mut mbr).unwrap();
    let e = 446 + 16 * slot;
    let word = |at: usize| u64::from(u32::from_le_bytes(mbr[at..at + 4].try_into().unwrap()));
    (word(e + 8) * 512, word(e + 12) * 512)
}

fn extract(img: &Path, (offset, len): (u64, u64), dest: &Path) {
    let mut f = fs::File::open(img).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut out = fs::File::create(dest).unwrap();
    std::io::copy(&mut f.take(len), &mut out).unwrap();
}

fn debugfs(fs_file: &Path, request: &str) -> String {
    let out = sh(Command::new("debugfs").arg("-R").arg(request).arg(fs_file));
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// (type, mode, uid, gid) from `debugfs stat`.
fn stat(fs_file: &Path, path: &str) -> (String, String, u32, u32) {
    let text = debugfs(fs_file, &format!("stat \"{path}\""));
    assert!(
        !text.contains("not found"),
        "{path} is not in the image: {text}"
    );
    let field = |name: &str| {
        let at = text
            .find(name)
            .unwrap_or_else(|| panic!("no {name} in {text}"));
        text[at + name.len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    (
        field("Type:"),
        field("Mode:"),
        field("User:").parse().unwrap(),
        field("Group:").parse().unwrap(),
    )
}

fn dump(fs_file: &Path, path: &str, dest: &Path) {
    debugfs(
        fs_file,
        &format!("dump -p \"{path}\" \"{}\"", dest.display()),
    );
    assert!(dest.exists(), "could not take {path} out of the image");
}

#[test]
fn an_image_boots_into_kestrel() {
    if !have_tools() || !have("qemu-aarch64", "qemu-user") {
        return;
    }
    let Some(kestrel) = arm64_kestrel() else {
        // CI runs this test again after the rpi4 bundle, naming its binary
        // (KESTREL_IMAGE_TEST_BINARY, which must then exist).
        eprintln!("no aarch64 kestrel built: test skipped (cargo build -p kestrel-runtime --target aarch64-unknown-linux-gnu --bin kestrel)");
        return;
    };
    let started = std::time::Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let img = base_image(d);
    let base_root_len = partition(&img, 1).1;
    sh(Command::new("xz").args(["-T1", "-0", "-k"]).arg(&img));
    let user_config = d.join("site.toml");
    fs::write(
        &user_config,
        "# site settings\nfps = 15\ntop_k = 2\nstatus_every = 0\n",
    )
    .unwrap();
    let key = d.join("id.pub");
    fs::write(
        &key,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKestrelTestKey ops@laptop\n",
    )
    .unwrap();
    let pass = d.join("wifi.pass");
    fs::write(&pass, "correct horse battery\n").unwrap();
    let out_dir = d.join("out");
    fs::create_dir(&out_dir).unwrap();
    // A path debugfs' command line would split.
    let spaced = d.join("my \"arm64\" kestrel");
    fs::copy(&kestrel, &spaced).unwrap();
    let out = out_dir.join("kestrel-rpi4.img");
    let run = boards()
        .args(["image", "rpi4", "--base"])
        .arg(d.join("raspios.img.xz"))
        .arg("-o")
        .arg(&out)
        .arg("--config")
        .arg(&user_config)
        .arg("--binary")
        .arg(&spaced)
        .args(["--hostname", "cam-1", "--user", "ops", "--ssh-key"])
        .arg(&key)
        .args([
            "--wifi-ssid",
            "site-net",
            "--wifi-country",
            "GB",
            "--wifi-password-file",
        ])
        .arg(&pass)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "image failed: {stderr}");
    eprintln!("{stderr}");
    let bmap = out_dir.join("kestrel-rpi4.bmap");
    assert!(out.exists() && bmap.exists());
    let mut left: Vec<_> = fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["kestrel-rpi4.bmap", "kestrel-rpi4.img"],
        "temporary files left behind"
    );

    // The root: grown for the binary, clean, with the package's files, modes and owners.
    let (root_off, root_len) = partition(&out, 1);
    assert!(root_len > base_root_len, "the root partition did not grow");
    assert!(fs::metadata(&out).unwrap().len() >= root_off + root_len);
    let root = d.join("out-root.ext4");
    extract(&out, (root_off, root_len), &root);
    sh(Command::new("e2fsck").arg("-fn").arg(&root));
    let model_dir = "/usr/share/kestrel/models";
    for (path, kind, mode) in [
        ("/usr/bin/kestrel", "regular", "0755"),
        ("/etc/kestrel", "directory", "0755"),
        ("/etc/kestrel/kestrel.toml", "regular", "0640"),
        (
            "/usr/share/kestrel/models/ppocr-cls.nnef.tgz",
            "regular",
            "0644",
        ),
        (
            "/usr/share/kestrel/models/ppocr-cls.kestrel.toml",
            "regular",
            "0644",
        ),
        ("/usr/lib/systemd/system/kestrel.service", "regular", "0644"),
        (
            "/usr/lib/systemd/system/kestrel-firstboot.service",
            "regular",
            "0644",
        ),
        ("/usr/lib/kestrel/postinst", "regular", "0755"),
        ("/usr/share/doc/kestrel/README.boards.md", "regular", "0644"),
    ] {
        assert_eq!(
            stat(&root, path),
            (kind.to_string(), mode.to_string(), 0, 0),
            "{path}"
        );
    }
    for unit in ["kestrel.service", "kestrel-firstboot.service"] {
        let link = format!("/etc/systemd/system/multi-user.target.wants/{unit}");
        assert_eq!(stat(&root, &link).0, "symlink", "{link}");
        let text = debugfs(&root, &format!("stat \"{link}\""));
        assert!(
            text.contains(&format!("\"/usr/lib/systemd/system/{unit}\"")),
            "{text}"
        );
    }
    // The base's own files are still there.
    assert_eq!(stat(&root, "/etc/passwd").0, "regular");

    // The config: the profile's with the site's settings, accepted by the runtime.
    let taken = d.join("taken");
    fs::create_dir(&taken).unwrap();
    dump(
        &root,
        "/etc/kestrel/kestrel.toml",
        &taken.join("kestrel.toml"),
    );
    let text = fs::read_to_string(taken.join("kestrel.toml")).unwrap();
    let config =
        kestrel_runtime::config::Config::parse(&text, Path::new("/etc/kestrel/kestrel.toml"))
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(config.fps, Some(15.0), "{text}");
    assert_eq!(config.top_k, Some(2));
    assert_eq!(config.threads, Some(4));
    assert_eq!(
        config.source.as_deref(),
        Some("cmd:rpicam-vid -t 0 -n --codec yuv420 --width 640 --height 480 --framerate 30 -o -")
    );
    assert_eq!(
        config.model,
        Some(PathBuf::from(model_dir).join("ppocr-cls.nnef.tgz"))
    );
    assert_eq!(text.matches("\nfps =").count(), 1, "{text}");
    // The first-boot unit runs the package's postinst and disables itself.
    dump(
        &root,
        "/usr/lib/systemd/system/kestrel-firstboot.service",
        &taken.join("fb.service"),
    );
    let unit = fs::read_to_string(taken.join("fb.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/lib/kestrel/postinst configure"),
        "{unit}"
    );
    assert!(
        unit.contains("systemctl disable kestrel-firstboot.service"),
        "{unit}"
    );
    assert!(unit.contains("Before=kestrel.service"), "{unit}");

    // The boot partition: custom.toml with the settings, no passphrase.
    let (boot_off, _) = partition(&out, 0);
    let custom = sh(Command::new("mtype")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(format!("{}@@{boot_off}", out.display()))
        .arg("::custom.toml"));
    let custom = String::from_utf8_lossy(&custom.stdout);
    assert!(!custom.contains("correct horse"), "{custom}");
    let t: toml::Table = toml::from_str(&custom).unwrap();
    assert_eq!(t["system"]["hostname"].as_str(), Some("cam-1"));
    assert_eq!(t["user"]["name"].as_str(), Some("ops"));
    assert!(t["user"].get("password").is_none());
    assert_eq!(t["ssh"]["password_authentication"].as_bool(), Some(false));
    assert!(t["ssh"]["authorized_keys"][0]
        .as_str()
        .unwrap()
        .starts_with("ssh-ed25519 "));
    assert_eq!(t["wlan"]["password"].as_str().unwrap().len(), 64);
    assert_eq!(t["wlan"]["password_encrypted"].as_bool(), Some(true));

    // The binary taken out of the image runs the image's config and model under qemu.
    for f in ["ppocr-cls.nnef.tgz", "ppocr-cls.kestrel.toml"] {
        dump(&root, &format!("{model_dir}/{f}"), &taken.join(f));
    }
    dump(&root, "/usr/bin/kestrel", &taken.join("kestrel"));
    let ran = sh(Command::new("qemu-aarch64")
        .args(["-cpu", "cortex-a72", "-L", "/usr/aarch64-linux-gnu"])
        .arg(taken.join("kestrel"))
        .arg("run")
        .arg("--config")
        .arg(taken.join("kestrel.toml"))
        .args([
            "--source",
            "synthetic",
            "--fps",
            "0",
            "--frames",
            "50",
            "--model",
        ])
        .arg(taken.join("ppocr-cls.nnef.tgz")));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&ran.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let summary = lines.last().unwrap();
    assert_eq!(summary["summary"]["frames"].as_u64(), Some(50), "{summary}");

    // The block map: bmaptool copies the image from it and checks every range.
    if have("bmaptool", "bmap-tools") {
        let copy = d.join("flashed.img");
        sh(Command::new("bmaptool")
            .arg("copy")
            .arg("--bmap")
            .arg(&bmap)
            .arg(&out)
            .arg(&copy));
        let same = sh(Command::new("cmp").arg(&out).arg(&copy));
        assert!(same.status.success());
    }
    eprintln!("image test: {:.1} s", started.elapsed().as_secs_f64());
}

/// Runs `image` expecting bad input: exit 2, `names` and `says` in the message, and nothing
/// left in the output folder.
fn refused(args: &[&std::ffi::OsStr], names: &Path, says: &str) {
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("x.img");
    let run = boards()
        .arg("image")
        .args(args)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&names.display().to_string()), "{stderr}");
    assert!(stderr.contains(says), "expected '{says}': {stderr}");
    let left: Vec<_> = fs::read_dir(out_dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn bad_inputs_are_refused_and_leave_nothing() {
    if !have_tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bin = fake_binary(d);
    let os = |p: &Path| p.as_os_str().to_owned();
    let args = |base: &Path| {
        vec![
            os(Path::new("rpi4")),
            "--base".into(),
            os(base),
            "--binary".into(),
            os(&bin),
        ]
    };
    let call = |a: Vec<std::ffi::OsString>, names: &Path, says: &str| {
        let refs: Vec<&std::ffi::OsStr> = a.iter().map(|s| s.as_os_str()).collect();
        refused(&refs, names, says);
    };

    // No partition table at all, and one without a boot partition.
    let zeros = d.join("zeros.img");
    fs::write(&zeros, vec![0u8; MIB as usize]).unwrap();
    call(args(&zeros), &zeros, "no MBR partition table");
    let root = root_fs(d, "ext4", 8);
    let no_boot = d.join("no-boot.img");
    assemble(&no_boot, &[(0x83, Some(&root), 0)]);
    call(args(&no_boot), &no_boot, "no FAT boot partition");

    // A root filesystem that is not ext4.
    let boot = boot_fs(d, 8);
    let ext2_root = root_fs(d, "ext2", 8);
    let ext2 = d.join("ext2.img");
    assemble(
        &ext2,
        &[(0x0c, Some(&boot), 0), (0x83, Some(&ext2_root), 0)],
    );
    call(args(&ext2), &ext2, "not ext4");

    // A root that is not a 64-bit Raspberry Pi OS (an empty filesystem).
    let empty_tree = d.join("empty");
    fs::create_dir(&empty_tree).unwrap();
    let empty_root = d.join("empty.ext4");
    sh(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&empty_tree)
        .arg(&empty_root)
        .arg("8M"));
    let empty = d.join("empty.img");
    assemble(
        &empty,
        &[(0x0c, Some(&boot), 0), (0x83, Some(&empty_root), 0)],
    );
    call(args(&empty), &empty, "not a Raspberry Pi OS root");

    // A truncated .xz.
    let good = d.join("good.img");
    assemble(&good, &[(0x0c, Some(&boot), 0), (0x83, Some(&root), 0)]);
    sh(Command::new("xz").args(["-T1", "-0", "-k"]).arg(&good));
    let xz = fs::read(d.join("good.img.xz")).unwrap();
    let cut = d.join("cut.img.xz");
    fs::write(&cut, &xz[..xz.len() / 2]).unwrap();
    call(args(&cut), &cut, "not a complete .xz file");

    // A config that does not parse.
    let config = d.join("my.toml");
    fs::write(&config, "threads = 2\nsorce = \"v4l2:/dev/video0\"\n").unwrap();
    let mut a = args(&good);
    a.extend(["--config".into(), os(&config)]);
    call(a, &config, "line 2");

    // Too little room: the root cannot grow into the partition behind it.
    let blocked = d.join("blocked.img");
    assemble(
        &blocked,
        &[
            (0x0c, Some(&boot), 0),
            (0x83, Some(&root), 0),
            (0x83, None, MIB),
        ],
    );
    let big = d.join("big-kestrel");
    let mut data = fs::read(&bin).unwrap();
    data.resize(12 * MIB as usize, 1);
    fs::write(&big, data).unwrap();
    let a = vec![
        os(Path::new("rpi4")),
        "--base".into(),
        os(&blocked),
        "--binary".into(),
        os(&big),
    ];
    call(a, &blocked, "too little room");
}
