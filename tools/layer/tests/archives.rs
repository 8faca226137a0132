//! kiln-layer end to end with real inputs: tarballs made by GNU tar (plain,
//! gzip, zstd, xz), .deb packages made by dpkg-deb, and outputs checked by
//! listing and extracting them with GNU tar, zstd and sha256sum (tools we did
//! not write). They must be installed (Debian: tar zstd xz-utils dpkg
//! coreutils; e2e/setup/deps.sh installs them).

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output};

use kiln_oci::{sha256_bytes, LayerDescriptor, ListingEntry, ListingKind};
use serde_json::json;

struct Work {
    dir: tempfile::TempDir,
}

/// One line of `tar -tv --numeric-owner --full-time`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Listed {
    perms: String,
    owner: String,
    size: String,
    time: String,
    name: String,
    /// `-> target` (symlink) or `link to target` (hard link).
    link: Option<String>,
}

struct Built {
    blob: Vec<u8>,
    desc: LayerDescriptor,
    listing: Vec<ListingEntry>,
}

impl Work {
    fn new() -> Work {
        Work {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Runs a bash script in the work directory; it must succeed.
    fn sh(&self, script: &str) -> String {
        let out = Command::new("bash")
            .args(["-euo", "pipefail", "-c", script])
            .current_dir(self.dir.path())
            .env("TZ", "UTC")
            .output()
            .unwrap_or_else(|e| panic!("bash: {e}"));
        assert!(
            out.status.success(),
            "script failed: {script}\n{}{}\n(this test needs GNU tar, zstd, xz-utils, dpkg-deb and coreutils)",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs kiln-layer with outputs `{out}.blob`, `{out}.json`,
    /// `{out}.listing.json` and the extra arguments; `--tar FILE` among them
    /// then runs `kiln-layer tar` (what the `<name>-layer.tar` action does)
    /// on the outputs.
    fn layer(&self, spec: serde_json::Value, out: &str, extra: &[&str]) -> Output {
        let spec_path = format!("{out}.spec.json");
        fs::write(self.p(&spec_path), spec.to_string()).unwrap();
        let (tar, extra): (Vec<&str>, Vec<&str>) = match extra {
            ["--tar", tar, rest @ ..] => (vec![*tar], rest.to_vec()),
            rest => (vec![], rest.to_vec()),
        };
        let built = Command::new(env!("CARGO_BIN_EXE_kiln-layer"))
            .args(["--spec", &spec_path])
            .args(["--blob", &format!("{out}.blob")])
            .args(["--descriptor", &format!("{out}.json")])
            .args(["--listing", &format!("{out}.listing.json")])
            .args(extra)
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        match tar.first() {
            Some(tar) if built.status.success() => Command::new(env!("CARGO_BIN_EXE_kiln-layer"))
                .args(["tar", "--blob", &format!("{out}.blob")])
                .args(["--descriptor", &format!("{out}.json"), "--out", tar])
                .current_dir(self.dir.path())
                .output()
                .unwrap(),
            _ => built,
        }
    }

    fn ok(&self, spec: serde_json::Value, out: &str, extra: &[&str]) -> Built {
        let o = self.layer(spec, out, extra);
        assert!(
            o.status.success(),
            "kiln-layer failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let blob = fs::read(self.p(&format!("{out}.blob"))).unwrap();
        let desc: LayerDescriptor =
            serde_json::from_slice(&fs::read(self.p(&format!("{out}.json"))).unwrap()).unwrap();
        let listing: Vec<ListingEntry> =
            serde_json::from_slice(&fs::read(self.p(&format!("{out}.listing.json"))).unwrap())
                .unwrap();
        assert_eq!(desc.digest, sha256_bytes(&blob));
        assert_eq!(desc.size, blob.len() as u64);
        Built {
            blob,
            desc,
            listing,
        }
    }

    /// kiln-layer must fail with exactly one stderr line starting with
    /// `prefix`, leaving none of the `{out}.*` outputs.
    fn fails(&self, spec: serde_json::Value, out: &str, extra: &[&str]) -> String {
        let o = self.layer(spec, out, extra);
        assert_eq!(o.status.code(), Some(1));
        let stderr = String::from_utf8(o.stderr).unwrap();
        for ext in ["blob", "json", "listing.json", "tar"] {
            assert!(!self.p(&format!("{out}.{ext}")).exists(), "{out}.{ext}");
        }
        let names: Vec<String> = fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            !names.iter().any(|n| n.contains(".tmp")),
            "temporary files left: {names:?}"
        );
        assert!(stderr.starts_with("kiln-layer: "), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        stderr.trim_end().to_string()
    }

    /// Lists a tar stream produced by `producer` (a shell pipeline).
    fn list(&self, producer: &str) -> Vec<Listed> {
        let out = self.sh(&format!(
            "{producer} | tar -tv --numeric-owner --full-time -f -"
        ));
        out.lines().map(parse_listed).collect()
    }

    fn list_gz(&self, out: &str) -> Vec<Listed> {
        self.list(&format!("gzip -dc {out}.blob"))
    }
}

fn parse_listed(line: &str) -> Listed {
    let mut rest = line;
    let mut fields = Vec::new();
    for _ in 0..5 {
        rest = rest.trim_start();
        let end = rest.find(' ').unwrap_or(rest.len());
        fields.push(rest[..end].to_string());
        rest = &rest[end..];
    }
    let rest = rest.trim_start();
    let (name, link) = if let Some((n, t)) = rest.split_once(" -> ") {
        (n, Some(t))
    } else if let Some((n, t)) = rest.split_once(" link to ") {
        (n, Some(t))
    } else {
        (rest, None)
    };
    Listed {
        perms: fields[0].clone(),
        owner: fields[1].clone(),
        size: fields[2].clone(),
        time: format!("{} {}", fields[3], fields[4]),
        name: name.to_string(),
        link: link.map(str::to_string),
    }
}

fn find<'a>(listed: &'a [Listed], name: &str) -> &'a Listed {
    listed
        .iter()
        .find(|l| l.name == name)
        .unwrap_or_else(|| panic!("{name} not in {listed:#?}"))
}

fn names(listed: &[Listed]) -> Vec<&str> {
    listed.iter().map(|l| l.name.as_str()).collect()
}

const EPOCH: &str = "1970-01-01 00:00:00";
const LONG: &str = "a-directory-with-a-rather-long-name-to-need-an-extension/and-a-file-name-that-is-long-enough-too-for-sure.txt";

/// A source tree with a file, an executable, a symlink, a hard link and a
/// long name, owned by 1234:5678 in the tarballs made from it.
fn make_source(w: &Work) {
    w.sh(&format!(
        "mkdir -p src/etc src/bin src/$(dirname {LONG})
         printf 'conf\\n' > src/etc/conf && chmod 640 src/etc/conf
         printf '#!/bin/sh\\necho tool\\n' > src/bin/tool && chmod 755 src/bin/tool
         ln src/bin/tool src/bin/tool2
         ln -s tool src/bin/alias
         printf 'long\\n' > src/{LONG}
         chmod 700 src/etc"
    ));
}

const TAR_OWNER: &str = "--owner=1234 --group=5678 --numeric-owner --mtime=@1000000 --sort=name";

#[test]
fn tars_of_every_compression_are_extracted_under_their_path() {
    let w = Work::new();
    make_source(&w);
    // Names that lie about the compression: it is detected from the bytes.
    w.sh(&format!(
        "tar {TAR_OWNER} --format=gnu -C src -cf plain.tgz .
         tar {TAR_OWNER} --format=pax -C src -czf gzip.tar .
         tar {TAR_OWNER} --format=pax -C src -cf - . | zstd -q -19 > zstd.tar.gz
         tar {TAR_OWNER} --format=gnu -C src -cf - . | xz -T2 --block-size=4096 > xz.tar"
    ));
    let sources = [
        ("plain", "plain.tgz"),
        ("gz", "gzip.tar"),
        ("zst", "zstd.tar.gz"),
        ("xz", "xz.tar"),
    ];
    let entries: Vec<_> = sources
        .iter()
        .map(|(dir, src)| json!({"attr": "tars", "kind": "tar", "path": format!("/opt/{dir}"), "source": src}))
        .collect();
    let built = w.ok(
        json!({"target": "//t:tars", "entries": entries}),
        "out",
        &[],
    );
    let listed = w.list_gz("out");

    for (dir, _) in sources {
        let d = format!("opt/{dir}");
        let l = find(&listed, &format!("{d}/etc/"));
        assert_eq!(
            (l.perms.as_str(), l.owner.as_str(), l.time.as_str()),
            ("drwx------", "1234/5678", EPOCH)
        );
        let l = find(&listed, &format!("{d}/etc/conf"));
        assert_eq!(
            (l.perms.as_str(), l.owner.as_str(), l.size.as_str()),
            ("-rw-r-----", "1234/5678", "5")
        );
        assert_eq!(find(&listed, &format!("{d}/bin/tool")).perms, "-rwxr-xr-x");
        let l = find(&listed, &format!("{d}/bin/tool2"));
        assert_eq!(
            (l.perms.as_str(), l.link.as_deref()),
            ("hrwxr-xr-x", Some(format!("{d}/bin/tool").as_str()))
        );
        let l = find(&listed, &format!("{d}/bin/alias"));
        assert_eq!(
            (l.perms.as_str(), l.link.as_deref()),
            ("lrwxrwxrwx", Some("tool"))
        );
        find(&listed, &format!("{d}/{LONG}"));
        // The archive root `./` is not an entry.
        assert_eq!(find(&listed, &format!("{d}/")).perms, "drwxr-xr-x");
    }
    // Sorted, each path once, every parent before its children.
    let mut sorted = names(&listed);
    sorted.sort();
    sorted.dedup();
    assert_eq!(names(&listed), sorted);
    assert!(listed.iter().all(|l| l.time == EPOCH), "{listed:#?}");

    // The listing covers every entry: hard links as files, symlinks with
    // their target.
    assert_eq!(built.listing.len(), listed.len());
    let e = built
        .listing
        .iter()
        .find(|e| e.path == "opt/xz/bin/alias")
        .unwrap();
    assert_eq!(
        (e.kind, e.target.as_deref()),
        (ListingKind::Symlink, Some("tool"))
    );
    let e = built
        .listing
        .iter()
        .find(|e| e.path == "opt/xz/bin/tool2")
        .unwrap();
    assert_eq!(e.kind, ListingKind::File);

    // Extracting the layer gives back the source tree, hard link included.
    w.sh("mkdir x && gzip -dc out.blob | tar -x --numeric-owner -C x -f -");
    for (dir, _) in sources {
        w.sh(&format!(
            "diff -r --no-dereference src x/opt/{dir}
             test \"$(stat -c %i x/opt/{dir}/bin/tool)\" = \"$(stat -c %i x/opt/{dir}/bin/tool2)\"
             test \"$(stat -c %u:%g:%a x/opt/{dir}/etc/conf)\" = 1234:5678:640"
        ));
    }
    assert_eq!(
        built.desc.media_type,
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
}

#[test]
fn hard_link_sorting_before_its_target_carries_the_data() {
    let w = Work::new();
    // GNU tar stores z/data first (with the bytes) and a/link as a hard
    // link to it; the layer sorts a/link first.
    w.sh(
        "mkdir -p s/z s/a && printf 'payload' > s/z/data && chmod 600 s/z/data
          ln s/z/data s/a/link
          tar --numeric-owner --owner=7 --group=8 -C s -cf h.tar z/data a/link",
    );
    assert_eq!(
        names(&w.list("cat h.tar")),
        ["z/data", "a/link"],
        "the input is not what this test needs"
    );
    w.ok(
        json!({"target": "//t:h", "entries": [{"attr": "tars", "kind": "tar", "path": "/", "source": "h.tar"}]}),
        "out",
        &[],
    );
    let listed = w.list_gz("out");
    assert_eq!(names(&listed), ["a/", "a/link", "z/", "z/data"]);
    let link = find(&listed, "a/link");
    assert_eq!(
        (
            link.perms.as_str(),
            link.owner.as_str(),
            link.size.as_str(),
            link.link.as_deref()
        ),
        ("-rw-------", "7/8", "7", None)
    );
    let data = find(&listed, "z/data");
    assert_eq!(
        (data.perms.as_str(), data.link.as_deref()),
        ("hrw-------", Some("a/link"))
    );
    w.sh("mkdir x && gzip -dc out.blob | tar -x -C x -f -
          test \"$(cat x/z/data)\" = payload && test \"$(cat x/a/link)\" = payload
          test \"$(stat -c %i x/z/data)\" = \"$(stat -c %i x/a/link)\"
          test \"$(stat -c %h x/z/data)\" = 2");
}

/// A Debian package with /usr/bin/hello and its copyright file.
fn make_package(w: &Work) {
    w.sh("mkdir -p pkg/DEBIAN pkg/usr/bin pkg/usr/share/doc/hello
          printf 'Package: hello\\nVersion: 1.0\\nArchitecture: all\\nMaintainer: K <k@example.com>\\nDescription: test\\n' > pkg/DEBIAN/control
          printf '#!/bin/sh\\necho hello\\n' > pkg/usr/bin/hello && chmod 755 pkg/usr/bin/hello
          printf 'public domain\\n' > pkg/usr/share/doc/hello/copyright
          for z in xz gzip zstd none; do
              dpkg-deb --root-owner-group -Z$z --build pkg hello_$z.deb >/dev/null
          done
          grep -q data.tar.zst hello_zstd.deb && grep -q data.tar.xz hello_xz.deb");
}

#[test]
fn debs_of_every_compression_give_one_copy_of_their_files() {
    let w = Work::new();
    make_package(&w);
    let entries: Vec<_> = ["xz", "gzip", "zstd", "none"]
        .iter()
        .map(|z| json!({"attr": "debs", "kind": "deb", "path": "/", "source": format!("hello_{z}.deb")}))
        .collect();
    let built = w.ok(
        json!({"target": "//t:debs", "compression": "zstd", "entries": entries}),
        "out",
        &[],
    );
    // The same package four times: identical entries are written once.
    let listed = w.list("zstd -dc out.blob");
    assert_eq!(
        names(&listed),
        [
            "usr/",
            "usr/bin/",
            "usr/bin/hello",
            "usr/share/",
            "usr/share/doc/",
            "usr/share/doc/hello/",
            "usr/share/doc/hello/copyright"
        ]
    );
    let hello = find(&listed, "usr/bin/hello");
    assert_eq!(
        (hello.perms.as_str(), hello.owner.as_str()),
        ("-rwxr-xr-x", "0/0")
    );
    assert_eq!(built.listing.len(), 7);
    w.sh(
        "mkdir x && zstd -dc out.blob | tar -x -C x -f - && cmp x/usr/bin/hello pkg/usr/bin/hello",
    );

    // Into a directory other than the root.
    w.ok(
        json!({"target": "//t:debs", "entries": [{"attr": "debs", "kind": "deb", "path": "/opt/pkgs/", "source": "hello_xz.deb"}]}),
        "opt",
        &[],
    );
    assert_eq!(
        names(&w.list_gz("opt"))[..3],
        ["opt/", "opt/pkgs/", "opt/pkgs/usr/"]
    );
}

#[test]
fn deb_without_data_member_is_an_error() {
    let w = Work::new();
    let mut deb = b"!<arch>\n".to_vec();
    deb.extend_from_slice(
        format!(
            "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
            "debian-binary", 0, 0, 0, 100644, 4
        )
        .as_bytes(),
    );
    deb.extend_from_slice(b"2.0\n");
    fs::write(w.p("nodata.deb"), &deb).unwrap();
    let e = w.fails(
        json!({"target": "//t:d", "entries": [{"attr": "debs", "kind": "deb", "path": "/", "source": "nodata.deb"}]}),
        "out",
        &[],
    );
    assert_eq!(
        e,
        "kiln-layer: //t:d: debs: nodata.deb: no data.tar, data.tar.gz, data.tar.xz or \
         data.tar.zst member: not a Debian binary package?"
    );
    w.sh("tar -cf not-a-deb.tar -T /dev/null");
    let e = w.fails(
        json!({"target": "//t:d", "entries": [{"attr": "debs", "kind": "deb", "path": "/", "source": "not-a-deb.tar"}]}),
        "out",
        &[],
    );
    assert!(e.contains("not-a-deb.tar: not a Debian package"), "{e}");
}

#[test]
fn entries_escaping_the_root_are_errors() {
    let w = Work::new();
    w.sh("mkdir -p in/sub && printf x > in/evil && cd in/sub && tar -cPf ../../evil.tar ../evil");
    // GNU tar will not store a hard link to `..`; the tar crate will.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Link);
    h.set_mode(0o644);
    h.set_size(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    b.append_link(&mut h, "b", "../../a").unwrap();
    fs::write(w.p("hl.tar"), b.into_inner().unwrap()).unwrap();
    assert!(
        w.sh("tar -tvPf hl.tar").contains("b link to ../../a"),
        "the input is not what this test needs"
    );
    let e = w.fails(
        json!({"target": "//t:evil", "entries": [{"attr": "tars", "kind": "tar", "path": "/", "source": "evil.tar"}]}),
        "out",
        &["--tar", "out.tar"],
    );
    assert_eq!(
        e,
        "kiln-layer: //t:evil: tars: evil.tar: entry \"../evil\": the path has a `..` component"
    );
    let e = w.fails(
        json!({"target": "//t:evil", "entries": [{"attr": "tars", "kind": "tar", "path": "/opt", "source": "hl.tar"}]}),
        "out",
        &[],
    );
    assert_eq!(
        e,
        "kiln-layer: //t:evil: tars: hl.tar: entry \"b\": hard link to \"../../a\": the path has a `..` component"
    );
}

#[test]
fn conflicting_entries_name_both_origins() {
    let w = Work::new();
    w.sh("mkdir -p one/etc two/etc three/etc/hosts four/etc
          printf one > one/etc/hosts && printf two > two/etc/hosts && printf one > four/etc/hosts
          printf x > three/etc/hosts/x && printf one > hosts
          for d in one two four; do tar --sort=name -C $d -cf $d.tar .; done
          tar -C three -cf three.tar etc/hosts/x
          printf y > y.txt");
    let tar = |src: &str| json!({"attr": "tars", "kind": "tar", "path": "/", "source": src});
    let spec = |entries: Vec<serde_json::Value>| json!({"target": "//t:c", "entries": entries});

    let e = w.fails(spec(vec![tar("one.tar"), tar("two.tar")]), "out", &[]);
    assert_eq!(
        e,
        "kiln-layer: //t:c: tars: \"etc/hosts\" is defined twice with different contents: \
         tars one.tar entry \"./etc/hosts\" and tars two.tar entry \"./etc/hosts\""
    );
    // A file from `files` and a symlink from a tar.
    w.sh("mkdir -p five/etc && ln -s one five/etc/hosts && tar -C five -cf five.tar .");
    let e = w.fails(
        spec(vec![
            json!({"attr": "files", "kind": "file", "path": "/etc/hosts", "source": "hosts", "mode": 420}),
            tar("five.tar"),
        ]),
        "out",
        &[],
    );
    assert!(
        e.contains("(source hosts) and tars five.tar entry \"./etc/hosts\""),
        "{e}"
    );
    // A file that another archive needs as a directory.
    let e = w.fails(spec(vec![tar("one.tar"), tar("three.tar")]), "out", &[]);
    assert_eq!(
        e,
        "kiln-layer: //t:c: tars: \"etc/hosts\" is a file (tars one.tar entry \"./etc/hosts\") \
         but tars three.tar entry \"etc/hosts/x\" needs it to be a directory"
    );
    // Identical bytes from two archives are one entry.
    w.ok(spec(vec![tar("one.tar"), tar("four.tar")]), "same", &[]);
    assert_eq!(names(&w.list_gz("same")), ["etc/", "etc/hosts"]);
}

#[test]
fn later_directory_metadata_wins() {
    let w = Work::new();
    w.sh("mkdir -p a/usr b/usr && chmod 700 a/usr && chmod 755 b/usr
          tar --owner=1 --group=1 --numeric-owner -C a -cf a.tar usr
          tar --owner=2 --group=3 --numeric-owner -C b -cf b.tar usr");
    let tar = |src: &str| json!({"attr": "tars", "kind": "tar", "path": "/", "source": src});
    w.ok(
        json!({"target": "//t:d", "entries": [tar("a.tar"), tar("b.tar")]}),
        "ab",
        &[],
    );
    let l = w.list_gz("ab");
    assert_eq!(
        (l[0].perms.as_str(), l[0].owner.as_str()),
        ("drwxr-xr-x", "2/3")
    );
    w.ok(
        json!({"target": "//t:d", "entries": [tar("b.tar"), tar("a.tar"),
        {"attr": "empty_files", "kind": "empty_file", "path": "/usr/x"}]}),
        "ba",
        &[],
    );
    let l = w.list_gz("ba");
    assert_eq!(
        (l[0].perms.as_str(), l[0].owner.as_str()),
        ("drwx------", "1/1")
    );
}

#[test]
fn devices_and_fifos_are_kept() {
    let w = Work::new();
    // mknod needs a capability containers may lack: the device entries are
    // written with the tar crate, the FIFO with GNU tar.
    let mut b = tar::Builder::new(Vec::new());
    for (name, ty, major, minor) in [
        ("dev/null", tar::EntryType::Char, 1, 3),
        ("dev/sda", tar::EntryType::Block, 8, 0),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(ty);
        h.set_mode(0o660);
        h.set_size(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        b.append_data(&mut h, name, std::io::empty()).unwrap();
    }
    fs::write(w.p("dev.tar"), b.into_inner().unwrap()).unwrap();
    w.sh("mkdir f && mkfifo -m 600 f/pipe && tar -C f -cf fifo.tar pipe");
    w.ok(
        json!({"target": "//t:dev", "entries": [
            {"attr": "tars", "kind": "tar", "path": "/", "source": "dev.tar"},
            {"attr": "tars", "kind": "tar", "path": "/run", "source": "fifo.tar"}]}),
        "out",
        &[],
    );
    let l = w.list_gz("out");
    let null = find(&l, "dev/null");
    assert_eq!(
        (null.perms.as_str(), null.size.as_str()),
        ("crw-rw----", "1,3")
    );
    let sda = find(&l, "dev/sda");
    assert_eq!(
        (sda.perms.as_str(), sda.size.as_str()),
        ("brw-rw----", "8,0")
    );
    assert_eq!(find(&l, "run/pipe").perms, "prw-------");
}

#[test]
fn zstd_blob_is_deterministic_and_decodes_with_the_zstd_cli() {
    let w = Work::new();
    make_source(&w);
    w.sh(&format!("tar {TAR_OWNER} -C src -czf src.tgz ."));
    let spec = json!({"target": "//t:z", "compression": "zstd", "entries": [
        {"attr": "tars", "kind": "tar", "path": "/", "source": "src.tgz"},
        {"attr": "files", "kind": "file", "path": "/etc/extra", "source": "src/etc/conf", "mode": 420}]});
    let one = w.ok(spec.clone(), "one", &[]);
    let two = w.ok(spec, "two", &[]);
    assert_eq!(one.blob, two.blob);
    assert_eq!(
        one.desc.media_type,
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    // Frame header descriptor: no content size, no single segment, no
    // checksum, no dictionary id.
    assert_eq!(&one.blob[..4], &[0x28, 0xb5, 0x2f, 0xfd]);
    assert_eq!(one.blob[4] & 0b1110_0111, 0, "{:#010b}", one.blob[4]);
    w.sh("zstd -t -q one.blob");
    let l = w.list("zstd -dc one.blob");
    assert_eq!(find(&l, "etc/extra").size, "5");
    assert_eq!(find(&l, "bin/tool2").link.as_deref(), Some("bin/tool"));
    // The diff_id is the digest of the decompressed tar.
    let tar_sha = w.sh("zstd -dc one.blob | sha256sum");
    assert_eq!(
        format!("sha256:{}", &tar_sha[..64]),
        one.desc.diff_id.to_string()
    );
}

#[test]
fn compression_options_set_the_level() {
    let w = Work::new();
    // Compressible but not trivial data.
    let text: String = (0..20000)
        .map(|i| format!("line {i} {}\n", i * 7919 % 1000))
        .collect();
    fs::write(w.p("data.txt"), text).unwrap();
    let spec = |compression: &str, options: &[&str]| {
        json!({"target": "//t:o", "compression": compression, "compression_options": options,
            "entries": [{"attr": "files", "kind": "file", "path": "/data.txt", "source": "data.txt"}]})
    };
    let blob = |c: &str, o: &[&str], out: &str| w.ok(spec(c, o), out, &[]).blob;
    let gz_default = blob("gzip", &[], "g");
    let gz1 = blob("gzip", &["-1"], "g1");
    let gz9 = blob("gzip", &["--best"], "g9");
    assert_eq!(gz_default, blob("gzip", &["-6"], "g6"));
    assert_ne!(gz1, gz_default);
    assert_ne!(gz9, gz_default);
    assert_eq!(gz1, blob("gzip", &["--fast"], "gfast"));
    assert!(gz9.len() < gz1.len());
    let z_default = blob("zstd", &[], "z");
    assert_eq!(z_default, blob("zstd", &["-3"], "z3"));
    let z19 = blob("zstd", &["-19"], "z19");
    assert_ne!(z19, z_default);
    assert_eq!(z19, blob("zstd", &["--best"], "zbest"));
    assert_ne!(blob("zstd", &["-1"], "z1"), z_default);
    for out in ["g1", "g9"] {
        w.sh(&format!(
            "gzip -dc {out}.blob | tar -xOf - data.txt | cmp - data.txt"
        ));
    }
    w.sh("zstd -dc z19.blob | tar -xOf - data.txt | cmp - data.txt");

    let e = w.fails(spec("gzip", &["-12"]), "bad", &[]);
    assert_eq!(
        e,
        "kiln-layer: //t:o: compression_options: \"-12\" is not an option of gzip \
         (supported: -1 to -9, --fast, --best)"
    );
    let e = w.fails(spec("zstd", &["--ultra"]), "bad", &[]);
    assert!(
        e.contains("compression_options: \"--ultra\" is not an option of zstd"),
        "{e}"
    );
    let e = w.fails(spec("brotli", &[]), "bad", &[]);
    assert_eq!(
        e,
        "kiln-layer: //t:o: compression: unsupported \"brotli\" (supported: gzip, zstd)"
    );
}

#[test]
fn mtime_seconds_and_preservation() {
    let w = Work::new();
    w.sh(
        "mkdir -p t/d && printf x > t/d/f && tar --mtime=@1000000 -C t -cf t.tar d
          printf y > file && touch -d @12345678 file",
    );
    let spec = |preserve: bool| {
        json!({"target": "//t:m", "mtime": {"seconds": 946684800, "preserve": preserve}, "entries": [
            {"attr": "tars", "kind": "tar", "path": "/opt", "source": "t.tar"},
            {"attr": "files", "kind": "file", "path": "/usr/bin/file", "source": "file"},
            {"attr": "symlinks", "kind": "symlink", "path": "/l", "target": "usr/bin/file"}]})
    };
    w.ok(spec(false), "portable", &[]);
    let l = w.list_gz("portable");
    assert!(l.iter().all(|e| e.time == "2000-01-01 00:00:00"), "{l:#?}");
    w.ok(spec(true), "kept", &[]);
    let l = w.list_gz("kept");
    assert_eq!(find(&l, "opt/d/f").time, "1970-01-12 13:46:40");
    assert_eq!(find(&l, "opt/d/").time, "1970-01-12 13:46:40");
    assert_eq!(find(&l, "usr/bin/file").time, "1970-05-23 21:21:18");
    // Created parents and non-file entries take `seconds`.
    for name in ["opt/", "usr/", "usr/bin/", "l"] {
        assert_eq!(find(&l, name).time, "2000-01-01 00:00:00", "{name}");
    }
}

#[test]
fn numeric_owners_of_entries() {
    let w = Work::new();
    fs::write(w.p("f"), b"f").unwrap();
    w.ok(
        json!({"target": "//t:u", "entries": [
            {"attr": "files", "kind": "file", "path": "/home/app/f", "source": "f", "uid": 1000, "gid": 2000, "mode": 384},
            {"attr": "empty_dirs", "kind": "dir", "path": "/home/app", "uid": 1000, "gid": 1000, "mode": 448},
            {"attr": "empty_files", "kind": "empty_file", "path": "/var/big", "uid": 4_000_000_000u64, "gid": 3}]}),
        "out",
        &[],
    );
    let l = w.list_gz("out");
    assert_eq!(find(&l, "home/").owner, "0/0");
    let app = find(&l, "home/app/");
    assert_eq!(
        (app.perms.as_str(), app.owner.as_str()),
        ("drwx------", "1000/1000")
    );
    let f = find(&l, "home/app/f");
    assert_eq!(
        (f.perms.as_str(), f.owner.as_str()),
        ("-rw-------", "1000/2000")
    );
    assert_eq!(find(&l, "var/big").owner, "4000000000/3");
}

#[test]
fn tar_output_is_the_decompressed_blob() {
    let w = Work::new();
    make_source(&w);
    w.sh(&format!("tar {TAR_OWNER} -C src -cJf src.txz ."));
    for (compression, decompress) in [("gzip", "gzip -dc"), ("zstd", "zstd -dc")] {
        let out = format!("out-{compression}");
        let tar = format!("{out}.tar");
        let built = w.ok(
            json!({"target": "//t:tar", "compression": compression, "entries": [
                {"attr": "tars", "kind": "tar", "path": "/", "source": "src.txz"}]}),
            &out,
            &["--tar", &tar],
        );
        let plain = fs::read(w.p(&tar)).unwrap();
        w.sh(&format!("{decompress} {out}.blob | cmp - {tar}"));
        let sum = w.sh(&format!("sha256sum {tar}"));
        assert_eq!(
            format!("sha256:{}", &sum[..64]),
            built.desc.diff_id.to_string()
        );
        assert_eq!(sha256_bytes(&plain), built.desc.diff_id);
        // The flag changes nothing else.
        let without = w.ok(
            json!({"target": "//t:tar", "compression": compression, "entries": [
                {"attr": "tars", "kind": "tar", "path": "/", "source": "src.txz"}]}),
            &format!("{out}-no-tar"),
            &[],
        );
        assert_eq!(without.blob, built.blob);
        assert!(!w.p(&format!("{out}-no-tar.tar")).exists());
        // GNU tar reads it.
        find(&w.list(&format!("cat {tar}")), "bin/tool2");
    }
}

#[test]
fn truncated_or_unknown_archives_are_errors() {
    let w = Work::new();
    make_source(&w);
    w.sh("tar -C src -cf src.tar . && head -c 3000 src.tar > cut.tar
          tar -C src -czf src.tgz . && head -c 200 src.tgz > cut.tgz
          tar -C src -cjf src.tbz2 .");
    let spec = |src: &str| json!({"target": "//t:bad", "entries": [{"attr": "tars", "kind": "tar", "path": "/", "source": src}]});
    let e = w.fails(spec("cut.tar"), "out", &[]);
    assert!(e.starts_with("kiln-layer: //t:bad: tars: cut.tar: "), "{e}");
    let e = w.fails(spec("cut.tgz"), "out", &[]);
    assert!(
        e.starts_with("kiln-layer: //t:bad: tars: cut.tgz: reading the archive: ")
            && e.contains("deflate"),
        "{e}"
    );
    let e = w.fails(spec("src.tbz2"), "out", &[]);
    assert_eq!(
        e,
        "kiln-layer: //t:bad: tars: src.tbz2: bzip2 compression is not supported (plain, gzip, zstd and xz are)"
    );
    let e = w.fails(spec("missing.tar"), "out", &[]);
    assert!(
        e.starts_with("kiln-layer: //t:bad: tars: missing.tar: opening: "),
        "{e}"
    );
}

#[test]
fn sparse_files() {
    let w = Work::new();
    w.sh(
        "mkdir s && truncate -s 300000 s/holes && printf end >> s/holes
          printf start | dd of=s/holes conv=notrunc status=none
          tar --sparse --format=gnu -C s -cf gnu.tar holes
          tar --sparse --format=pax -C s -cf pax.tar holes",
    );
    // The type flag of the first header: `S`, a GNU sparse file.
    assert_eq!(
        fs::read(w.p("gnu.tar")).unwrap()[156],
        b'S',
        "the input is not what this test needs"
    );
    w.ok(
        json!({"target": "//t:s", "entries": [{"attr": "tars", "kind": "tar", "path": "/", "source": "gnu.tar"}]}),
        "out",
        &[],
    );
    w.sh("gzip -dc out.blob | tar -xOf - holes | cmp - s/holes");
    let e = w.fails(
        json!({"target": "//t:s", "entries": [{"attr": "tars", "kind": "tar", "path": "/", "source": "pax.tar"}]}),
        "bad",
        &[],
    );
    assert!(e.contains("PAX sparse files are not supported"), "{e}");
}

const BUNDLE: &str = "etc/ssl/certs/ca-certificates.crt";

/// `ca.deb` (like Debian's ca-certificates: `./`-prefixed names, .crt files
/// under usr/share/ca-certificates, one without a final newline, a symlink,
/// other files) and `extra.tar.zst` (a hard link, a directory named like a
/// certificate, a copy of one of the deb's certificates).
fn make_ca_sources(w: &Work) {
    w.sh("mkdir -p ca/DEBIAN ca/usr/share/ca-certificates/mozilla ca/usr/share/doc/ca-certificates ca/etc/ssl/certs
          printf 'Package: ca-certificates\\nVersion: 1\\nArchitecture: all\\nMaintainer: K <k@example.com>\\nDescription: test\\n' > ca/DEBIAN/control
          m=ca/usr/share/ca-certificates/mozilla
          printf -- '-----BEGIN CERTIFICATE-----\\nBBB\\n-----END CERTIFICATE-----\\n' > $m/B.crt
          printf -- '-----BEGIN CERTIFICATE-----\\nAAA\\n-----END CERTIFICATE-----' > $m/A.crt
          : > $m/empty.crt
          printf 'not a cert\\n' > $m/README
          printf 'not a cert\\n' > $m/B.crt.orig
          printf 'doc\\n' > ca/usr/share/doc/ca-certificates/doc.crt
          ln -s A.crt $m/link.crt
          ln -s ../../../../usr/share/ca-certificates/mozilla/B.crt ca/etc/ssl/certs/B.pem
          dpkg-deb --root-owner-group -Zxz --build ca ca.deb >/dev/null
          dpkg-deb -c ca.deb | grep -q ' -> A.crt'
          mkdir -p x/usr/share/ca-certificates/local x/usr/share/ca-certificates/dir.crt x/usr/share/ca-certificates/mozilla
          printf 'CCC\\n' > x/usr/share/ca-certificates/local/C.crt
          ln x/usr/share/ca-certificates/local/C.crt x/usr/share/ca-certificates/local/D.crt
          printf 'notes\\n' > x/usr/share/ca-certificates/dir.crt/notes.txt
          cp $m/B.crt x/usr/share/ca-certificates/mozilla/B.crt
          tar --sort=name -C x -cf - usr | zstd -q > extra.tar.zst");
}

fn ca_entry(sources: &[&str], pattern: &str) -> serde_json::Value {
    json!({"attr": "ca_certificates", "kind": "concat", "path": "/etc/ssl/certs/ca-certificates.crt",
           "mode": 420, "sources": sources, "pattern": pattern})
}

#[test]
fn concat_builds_a_ca_bundle_in_path_order() {
    let w = Work::new();
    make_ca_sources(&w);
    let pattern = "usr/share/ca-certificates/**/*.crt";
    // The deb alone: A (newline added), B; not the symlink, the README, the
    // .orig or the doc file; the empty file adds nothing.
    w.ok(
        json!({"target": "//t:ca", "mtime": {"seconds": 946684800},
               "entries": [ca_entry(&["ca.deb"], pattern)]}),
        "deb",
        &[],
    );
    let a = "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n";
    let b = "-----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----\n";
    assert_eq!(
        w.sh(&format!("gzip -dc deb.blob | tar -xOf - {BUNDLE}")),
        format!("{a}{b}")
    );
    let listed = w.list_gz("deb");
    assert_eq!(
        names(&listed),
        ["etc/", "etc/ssl/", "etc/ssl/certs/", BUNDLE]
    );
    let l = find(&listed, BUNDLE);
    assert_eq!(
        (l.perms.as_str(), l.owner.as_str(), l.time.as_str()),
        ("-rw-r--r--", "0/0", "2000-01-01 00:00:00")
    );

    // With the tarball too: the hard link counts, the directory named
    // `dir.crt` does not, and the identical copy of B is taken once. The
    // order is the members' paths', not the sources'.
    let built = w.ok(
        json!({"target": "//t:ca", "entries": [
            ca_entry(&["extra.tar.zst", "ca.deb"], pattern),
            {"attr": "debs", "kind": "deb", "path": "/", "source": "ca.deb"},
            {"attr": "x", "kind": "concat", "path": "/etc/local.crt", "mode": 384, "uid": 7, "gid": 8,
             "sources": ["extra.tar.zst"], "pattern": "/usr/share/ca-certificates/local/*"}]}),
        "both",
        &["--tar", "both.tar"],
    );
    assert_eq!(
        w.sh(&format!("tar -xOf both.tar {BUNDLE}")),
        format!("CCC\nCCC\n{a}{b}")
    );
    assert_eq!(w.sh("tar -xOf both.tar etc/local.crt"), "CCC\nCCC\n");
    // A hard link counts even when what it links to does not match.
    w.ok(
        json!({"target": "//t:ca", "entries": [ca_entry(&["extra.tar.zst"], "**/D.crt")]}),
        "link",
        &["--tar", "link.tar"],
    );
    assert_eq!(w.sh(&format!("tar -xOf link.tar {BUNDLE}")), "CCC\n");
    let l = find(&w.list("cat both.tar"), "etc/local.crt").clone();
    assert_eq!((l.perms.as_str(), l.owner.as_str()), ("-rw-------", "7/8"));
    let e = built.listing.iter().find(|e| e.path == BUNDLE).unwrap();
    assert_eq!((e.kind, e.target.as_deref()), (ListingKind::File, None));

    // A regular file like any other: an identical `file` entry is merged,
    // a different one is a conflict naming both.
    fs::write(w.p("bundle"), format!("{a}{b}")).unwrap();
    fs::write(w.p("other"), "other\n").unwrap();
    let file = |src: &str| json!({"attr": "files", "kind": "file", "path": "/etc/ssl/certs/ca-certificates.crt", "source": src});
    let merged = w.ok(
        json!({"target": "//t:ca", "entries": [ca_entry(&["ca.deb"], pattern), file("bundle")]}),
        "merged",
        &[],
    );
    assert_eq!(merged.listing.len(), 4);
    let e = w.fails(
        json!({"target": "//t:ca", "entries": [ca_entry(&["ca.deb"], pattern), file("other")]}),
        "conflict",
        &[],
    );
    assert_eq!(
        e,
        format!(
            "kiln-layer: //t:ca: files: \"{BUNDLE}\" is defined twice with different contents: \
             ca_certificates \"/{BUNDLE}\" (concatenation of \"{pattern}\" in ca.deb) and \
             files \"/{BUNDLE}\" (source other)"
        )
    );
}

#[test]
fn concat_errors() {
    let w = Work::new();
    make_ca_sources(&w);
    let spec = |entry: serde_json::Value| json!({"target": "//t:ca", "entries": [entry]});
    // No match: symlinks and directories do not count.
    for pattern in [
        "usr/share/ca-certificates/**/*.pem",
        "**/link.crt",
        "**/dir.crt",
    ] {
        let e = w.fails(
            spec(ca_entry(&["ca.deb", "extra.tar.zst"], pattern)),
            "out",
            &[],
        );
        assert_eq!(
            e,
            format!(
                "kiln-layer: //t:ca: ca_certificates: \"/{BUNDLE}\": pattern \"{pattern}\" \
                 matches no regular file in ca.deb, extra.tar.zst"
            )
        );
    }
    // The same member with different contents in two sources.
    w.sh("mkdir -p y/usr/share/ca-certificates/mozilla
          printf 'other B\\n' > y/usr/share/ca-certificates/mozilla/B.crt
          tar -C y -cf other.tar usr");
    let e = w.fails(
        spec(ca_entry(
            &["ca.deb", "other.tar"],
            "usr/share/ca-certificates/**/*.crt",
        )),
        "out",
        &[],
    );
    assert_eq!(
        e,
        "kiln-layer: //t:ca: ca_certificates: \"usr/share/ca-certificates/mozilla/B.crt\" is in \
         two archives with different contents: ca.deb (data.tar.xz) entry \
         \"./usr/share/ca-certificates/mozilla/B.crt\" and other.tar entry \
         \"usr/share/ca-certificates/mozilla/B.crt\""
    );
    // Keys.
    let bad = |entry: serde_json::Value, expected: &str| {
        let e = w.fails(spec(entry), "out", &[]);
        assert_eq!(e, format!("kiln-layer: //t:ca: {expected}"));
    };
    bad(
        json!({"attr": "c", "kind": "concat", "path": "/b", "pattern": "*"}),
        "c: \"/b\": a concat entry needs \"sources\" (archives)",
    );
    bad(
        json!({"attr": "c", "kind": "concat", "path": "/b", "sources": [], "pattern": "*"}),
        "c: \"/b\": a concat entry needs \"sources\" (archives)",
    );
    bad(
        json!({"attr": "c", "kind": "concat", "path": "/b", "sources": ["ca.deb"]}),
        "c: \"/b\": a concat entry needs \"pattern\"",
    );
    bad(
        json!({"attr": "c", "kind": "concat", "path": "/b", "sources": ["ca.deb"], "pattern": "*", "source": "ca.deb"}),
        "c: \"/b\": \"source\" is not allowed on a concat entry",
    );
    bad(
        json!({"attr": "c", "kind": "concat", "path": "/b", "sources": ["ca.deb"], "pattern": "a**/*.crt"}),
        "c: \"/b\": pattern \"a**/*.crt\": `**` must be a whole path component",
    );
    bad(
        json!({"attr": "c", "kind": "concat", "path": "/a/../b", "sources": ["ca.deb"], "pattern": "*"}),
        "c: \"/a/../b\": the path has a `..` component",
    );
    bad(
        json!({"attr": "debs", "kind": "deb", "path": "/", "source": "ca.deb", "pattern": "*"}),
        "debs: \"/\": \"pattern\" is not allowed on a deb entry",
    );
    let e = w.fails(spec(ca_entry(&["nope.deb"], "*")), "out", &[]);
    assert!(
        e.starts_with("kiln-layer: //t:ca: ca_certificates: nope.deb: opening: "),
        "{e}"
    );
}

#[test]
fn concat_larger_than_64_mib_is_an_error() {
    let w = Work::new();
    // 2 × 40 MiB of zeros, highly compressible.
    w.sh(
        "mkdir big && head -c 40M /dev/zero > big/a.crt && cp big/a.crt big/b.crt
          tar -C big -czf big.tar.gz a.crt b.crt && rm -r big",
    );
    let e = w.fails(
        json!({"target": "//t:big", "entries": [ca_entry(&["big.tar.gz"], "*.crt")]}),
        "out",
        &[],
    );
    assert_eq!(
        e,
        format!(
            "kiln-layer: //t:big: ca_certificates: \"/{BUNDLE}\": the concatenation is larger \
             than 64 MiB (at big.tar.gz entry \"b.crt\")"
        )
    );
}

/// The real Debian package (downloaded with `apt-get download`, so this
/// test needs a Debian or Ubuntu host with package lists and network).
#[test]
fn concat_of_debians_ca_certificates() {
    let w = Work::new();
    w.sh("apt-get download ca-certificates >/dev/null 2>&1 || {
              echo 'apt-get download ca-certificates failed (needs apt and network)' >&2; exit 1; }
          ls ca-certificates_*.deb >/dev/null && mv ca-certificates_*.deb ca-certificates.deb");
    w.ok(
        json!({"target": "//t:ca", "entries": [ca_entry(&["ca-certificates.deb"], "usr/share/ca-certificates/**/*.crt")]}),
        "out",
        &[],
    );
    let counts = w.sh(&format!(
        "gzip -dc out.blob | tar -xOf - {BUNDLE} > bundle
         dpkg-deb -c ca-certificates.deb | grep '^-' | grep -c ' ./usr/share/ca-certificates/.*\\.crt$'
         grep -c -- '-----BEGIN CERTIFICATE-----' bundle
         grep -c -- '-----END CERTIFICATE-----' bundle"
    ));
    let counts: Vec<u32> = counts.lines().map(|l| l.parse().unwrap()).collect();
    assert!(counts[0] > 100, "{counts:?}");
    assert_eq!(counts, [counts[0]; 3]);
    // What the postinst's update-ca-certificates appends for each
    // certificate (`sed -e '$a\'`: a final newline when missing), in
    // bytewise path order.
    w.sh("dpkg-deb -x ca-certificates.deb root
          find root/usr/share/ca-certificates -name '*.crt' -type f | LC_ALL=C sort |
              while read -r f; do sed -e '$a\\' \"$f\"; done > expected
          cmp bundle expected");
}
