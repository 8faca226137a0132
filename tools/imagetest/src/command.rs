//! commandTests: a command run inside the unpacked image, with the image's
//! environment, working directory and user, and its output checked.
//!
//! How it is confined:
//! - as root (Bazel's sandbox on CI, remote executors' containers): chroot(2)
//!   into the root, then the image's user, no other tool needed;
//! - otherwise through bubblewrap (`bwrap`, user namespaces), which binds
//!   the root as `/` with fresh `/dev` and `/proc`.
//!
//! `KILN_IMAGETEST_RUNNER=chroot|bwrap` chooses. An image of another CPU
//! runs under qemu-user: directly when the kernel has a binfmt_misc entry
//! for it with the F flag (the interpreter opened when registered, so it
//! works inside a chroot), else by running `qemu-<arch>-static` (copied
//! into the root) on the command.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context};

use kiln_oci::rootfs::Rootfs;

use crate::checks::{match_regexes, ImageConfig, Mismatch};
use crate::config::{CommandTest, EnvVar};

/// The directory in the root that holds a copied qemu-user.
const QEMU_DIR: &str = ".kiln-imagetest";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confinement {
    Chroot,
    Bwrap(PathBuf),
}

/// How commands of an image run: confinement, emulation, user.
pub struct Runner {
    confinement: Confinement,
    /// qemu-user to run the command with, as a path inside the root.
    emulator: Option<PathBuf>,
    uid: u32,
    gid: u32,
    workdir: String,
    env: Vec<(String, String)>,
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/bin", "/usr/local/bin", "/bin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    found
}

/// True for an ELF file without a program interpreter (PT_INTERP): a
/// static executable, which runs inside the image's root.
fn is_static_elf(path: &Path) -> bool {
    let Ok(bytes) = fs::read(path) else {
        return false;
    };
    // 64-bit little-endian ELF only (what qemu-user is built as on the
    // machines rules_kiln supports).
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 || bytes[5] != 1 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]) as usize;
    let Ok(phoff) = <[u8; 8]>::try_from(&bytes[32..40]).map(u64::from_le_bytes) else {
        return false;
    };
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    (0..phnum).all(|i| {
        let at = phoff as usize + i * phentsize;
        const PT_INTERP: u32 = 3;
        bytes
            .get(at..at + 4)
            .is_some_and(|t| u32::from_le_bytes([t[0], t[1], t[2], t[3]]) != PT_INTERP)
    })
}

/// qemu-user's name for an OCI architecture.
fn qemu_arch(arch: &str) -> &str {
    match arch {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        "386" => "i386",
        "ppc64le" => "ppc64le",
        "loong64" => "loongarch64",
        other => other,
    }
}

/// True when binfmt_misc runs `qemu_name` binaries itself, with its
/// interpreter opened at registration (flag F).
fn binfmt_fixed(qemu_name: &str) -> bool {
    let entry = Path::new("/proc/sys/fs/binfmt_misc").join(format!("qemu-{qemu_name}"));
    let Ok(text) = fs::read_to_string(entry) else {
        return false;
    };
    text.lines().next() == Some("enabled")
        && text
            .lines()
            .any(|l| l.strip_prefix("flags:").is_some_and(|f| f.contains('F')))
}

fn lookup_id(rootfs: &Rootfs, file: &str, name: &str) -> Option<(u32, Option<u32>)> {
    let rel = rootfs.resolve(Path::new(file), true).ok()??;
    let text = fs::read_to_string(rootfs.root().join(rel)).ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.first() == Some(&name) && f.len() > 3 {
            Some((f[2].parse().ok()?, f[3].parse().ok()))
        } else {
            None
        }
    })
}

/// The image's `User` (`uid`, `name`, `uid:gid`, `name:group`) as ids.
pub fn resolve_user(rootfs: &Rootfs, user: &str) -> anyhow::Result<(u32, u32)> {
    if user.is_empty() {
        return Ok((0, 0));
    }
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let (uid, primary) = match u.parse::<u32>() {
        Ok(n) => (n, lookup_passwd_gid(rootfs, n)),
        Err(_) => lookup_id(rootfs, "/etc/passwd", u).ok_or_else(|| {
            anyhow!("user {u:?} of the image config is not in the image's /etc/passwd")
        })?,
    };
    let gid = match g {
        None => primary.unwrap_or(uid),
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                lookup_id(rootfs, "/etc/group", g)
                    .ok_or_else(|| {
                        anyhow!("group {g:?} of the image config is not in the image's /etc/group")
                    })?
                    .0
            }
        },
    };
    Ok((uid, gid))
}

fn lookup_passwd_gid(rootfs: &Rootfs, uid: u32) -> Option<u32> {
    let rel = rootfs.resolve(Path::new("/etc/passwd"), true).ok()??;
    let text = fs::read_to_string(rootfs.root().join(rel)).ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[2].parse() == Ok(uid)).then(|| f[3].parse().ok())?
    })
}

impl Runner {
    /// A runner for the image unpacked at `rootfs`, of CPU `arch` (OCI name).
    pub fn new(
        rootfs: &Rootfs,
        config: &ImageConfig,
        arch: &str,
        global_env: &[EnvVar],
    ) -> anyhow::Result<Runner> {
        let confinement = match std::env::var("KILN_IMAGETEST_RUNNER").as_deref() {
            Ok("chroot") => Confinement::Chroot,
            Ok("bwrap") => Confinement::Bwrap(find_on_path("bwrap").ok_or_else(|| {
                anyhow!("KILN_IMAGETEST_RUNNER=bwrap: no bwrap on PATH (Debian package bubblewrap)")
            })?),
            Ok(other) if !other.is_empty() => {
                bail!("KILN_IMAGETEST_RUNNER={other:?}: give chroot or bwrap")
            }
            _ => {
                // SAFETY: geteuid has no preconditions.
                if unsafe { libc::geteuid() } == 0 {
                    Confinement::Chroot
                } else {
                    Confinement::Bwrap(find_on_path("bwrap").ok_or_else(|| {
                        anyhow!("commandTests need root (chroot) or bubblewrap (bwrap, Debian package bubblewrap) on PATH")
                    })?)
                }
            }
        };
        let host = kiln_oci::select::host_platform().architecture;
        let emulator = if arch == host {
            None
        } else {
            let q = qemu_arch(arch);
            if binfmt_fixed(q) {
                None
            } else {
                // Debian's qemu-user-static, or (since 9.1) qemu-user, whose
                // binaries are static too. Only a static one runs in the root.
                let qemu = [format!("qemu-{q}-static"), format!("qemu-{q}")]
                    .iter()
                    .filter_map(|n| find_on_path(n))
                    .find(|p| is_static_elf(p))
                    .ok_or_else(|| {
                        anyhow!("the image is linux/{arch}, this machine {host}: commandTests need a static qemu-{q}-static or qemu-{q} on PATH (Debian package qemu-user-static) or a binfmt_misc entry qemu-{q} with the F flag")
                    })?;
                let name = format!("qemu-{q}-static");
                let dir = rootfs.root().join(QEMU_DIR);
                fs::create_dir_all(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
                fs::copy(&qemu, dir.join(&name))
                    .with_context(|| format!("copying {} into the image root", qemu.display()))?;
                Some(Path::new("/").join(QEMU_DIR).join(name))
            }
        };
        let (uid, gid) = resolve_user(rootfs, &config.user)?;
        let mut env = config.env.clone();
        set_env(&mut env, global_env);
        if !env.iter().any(|(k, _)| k == "PATH") {
            env.push((
                "PATH".into(),
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            ));
        }
        Ok(Runner {
            confinement,
            emulator,
            uid,
            gid,
            workdir: if config.workdir.is_empty() {
                "/".into()
            } else {
                config.workdir.clone()
            },
            env,
        })
    }

    pub fn describe(&self) -> String {
        let how = match &self.confinement {
            Confinement::Chroot => "chroot".to_string(),
            Confinement::Bwrap(p) => format!("bubblewrap ({})", p.display()),
        };
        match &self.emulator {
            Some(q) => format!("{how}, under {}", q.display()),
            None => how,
        }
    }

    /// Runs test `t` and checks its exit code and output.
    pub fn run(&self, rootfs: &Rootfs, t: &CommandTest) -> Vec<Mismatch> {
        let mut env = self.env.clone();
        set_env(&mut env, &t.env_vars);
        let program = match resolve_program(rootfs, &t.command, &env) {
            Ok(p) => p,
            Err(e) => {
                return vec![Mismatch {
                    what: "command".into(),
                    expected: format!("{} in the image", t.command),
                    actual: format!("{e:#}"),
                }]
            }
        };
        let mut argv: Vec<String> = Vec::new();
        if let Some(q) = &self.emulator {
            argv.push(q.display().to_string());
        }
        argv.push(program);
        argv.extend(t.args.iter().cloned());
        let output = match self.command(rootfs, &argv, &env).and_then(|mut c| {
            c.stdin(Stdio::null())
                .output()
                .with_context(|| format!("running {:?}", argv))
        }) {
            Ok(o) => o,
            Err(e) => {
                return vec![Mismatch {
                    what: "command".into(),
                    expected: "it runs".into(),
                    actual: format!("{e:#}"),
                }]
            }
        };
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let mut out = Vec::new();
        let code = output.status.code();
        if code != Some(t.exit_code) {
            let actual = match code {
                Some(c) => c.to_string(),
                None => format!("killed ({})", output.status),
            };
            out.push(Mismatch {
                what: format!("exit code of {}", argv.join(" ")),
                expected: t.exit_code.to_string(),
                actual: format!(
                    "{actual}\nstdout: {}\nstderr: {}",
                    stdout.trim_end(),
                    stderr.trim_end()
                ),
            });
        }
        out.extend(match_regexes(
            "stdout",
            &stdout,
            &t.expected_output,
            &t.excluded_output,
        ));
        out.extend(match_regexes(
            "stderr",
            &stderr,
            &t.expected_error,
            &t.excluded_error,
        ));
        out
    }

    fn command(
        &self,
        rootfs: &Rootfs,
        argv: &[String],
        env: &[(String, String)],
    ) -> anyhow::Result<Command> {
        let root = rootfs.root();
        match &self.confinement {
            Confinement::Bwrap(bwrap) => {
                let mut c = Command::new(bwrap);
                c.env_clear().envs(env.iter().map(|(k, v)| (k, v)));
                c.args(["--unshare-all", "--die-with-parent", "--bind"])
                    .arg(root)
                    .args([
                        "/",
                        "--dev",
                        "/dev",
                        "--proc",
                        "/proc",
                        "--chdir",
                        &self.workdir,
                    ])
                    .args([
                        "--uid",
                        &self.uid.to_string(),
                        "--gid",
                        &self.gid.to_string(),
                        "--",
                    ])
                    .args(argv);
                Ok(c)
            }
            Confinement::Chroot => {
                let root_c = CString::new(root.as_os_str().as_bytes())?;
                let workdir_c = CString::new(self.workdir.as_bytes())?;
                let (uid, gid) = (self.uid, self.gid);
                let mut c = Command::new(&argv[0]);
                c.args(&argv[1..])
                    .env_clear()
                    .envs(env.iter().map(|(k, v)| (k, v)));
                // SAFETY: only async-signal-safe calls between fork and exec,
                // on memory prepared before the fork.
                unsafe {
                    c.pre_exec(move || {
                        let fail = || Err(std::io::Error::last_os_error());
                        if libc::chroot(root_c.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
                            return fail();
                        }
                        if libc::chdir(workdir_c.as_ptr()) != 0 {
                            return fail();
                        }
                        if libc::setgroups(0, std::ptr::null()) != 0
                            || libc::setgid(gid) != 0
                            || libc::setuid(uid) != 0
                        {
                            return fail();
                        }
                        Ok(())
                    });
                }
                Ok(c)
            }
        }
    }
}

/// Sets `vars` in `env`, replacing values already there.
fn set_env(env: &mut Vec<(String, String)>, vars: &[EnvVar]) {
    for v in vars {
        env.retain(|(k, _)| *k != v.key);
        env.push((v.key.clone(), v.value.clone()));
    }
}

/// `command` as an absolute path in the image: as given when it has a `/`,
/// else the first match on the image's PATH.
fn resolve_program(
    rootfs: &Rootfs,
    command: &str,
    env: &[(String, String)],
) -> anyhow::Result<String> {
    if command.contains('/') {
        return Ok(command.to_string());
    }
    let path = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(command);
        if let Ok(Some(rel)) = rootfs.resolve(&candidate, true) {
            if rootfs.root().join(rel).is_file() {
                return Ok(candidate.display().to_string());
            }
        }
    }
    bail!("{command:?} is not on the image's PATH ({path})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_elf_is_told_from_a_dynamic_one() {
        // This test binary is dynamically linked (Rust's default on Linux gnu).
        let me = std::env::current_exe().unwrap();
        assert!(!is_static_elf(&me));
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("script");
        fs::write(&text, "#!/bin/sh\n").unwrap();
        assert!(!is_static_elf(&text));
    }

    #[test]
    fn users_resolve_through_the_image_passwd() {
        let dir = tempfile::tempdir().unwrap();
        let root = Rootfs::create(dir.path().join("r")).unwrap();
        fs::create_dir_all(root.root().join("etc")).unwrap();
        fs::write(
            root.root().join("etc/passwd"),
            "root:x:0:0::/root:/sbin/nologin\nnonroot:x:65532:65533::/home/nonroot:/sbin/nologin\n",
        )
        .unwrap();
        fs::write(root.root().join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        assert_eq!(resolve_user(&root, "").unwrap(), (0, 0));
        assert_eq!(resolve_user(&root, "nonroot").unwrap(), (65532, 65533));
        assert_eq!(resolve_user(&root, "65532").unwrap(), (65532, 65533));
        assert_eq!(resolve_user(&root, "1000").unwrap(), (1000, 1000));
        assert_eq!(resolve_user(&root, "nonroot:staff").unwrap(), (65532, 50));
        assert_eq!(resolve_user(&root, "1:2").unwrap(), (1, 2));
        assert!(format!("{:#}", resolve_user(&root, "nobody").unwrap_err()).contains("nobody"));
    }
}
