//! What rules_kiln knows about platforms, written once: the operating
//! systems an image may name, the CPU architectures (with what a binary for
//! each looks like, where its libraries live, and which ones rules_kiln
//! builds images and tools for), and which spellings of a platform mean the
//! same image.
//!
//! The rules read the same tables from `rules/private/generated.bzl`, which
//! [`crate::generated_bzl`] writes from these and a test keeps current.

use crate::program::Endian;

/// Go's GOOS values, which the OCI image spec names for `os`.
pub const OPERATING_SYSTEMS: &[&str] = &[
    "aix",
    "android",
    "darwin",
    "dragonfly",
    "freebsd",
    "illumos",
    "ios",
    "js",
    "linux",
    "netbsd",
    "openbsd",
    "plan9",
    "solaris",
    "wasip1",
    "windows",
];

/// A CPU architecture, by its OCI (GOARCH) name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Architecture {
    /// OCI `architecture`: `amd64`, `arm64`, ...
    pub name: &'static str,
    /// The `variant` rules_kiln writes in the images it builds ("" for none).
    pub variant: &'static str,
    /// What an ELF binary for it says: `(e_machine, class, byte order)`.
    pub elf: (u16, u8, Endian),
    /// Debian's multiarch directory (`/usr/lib/<triplet>`), where one exists.
    pub multiarch: Option<&'static str>,
    /// Set for the architectures rules_kiln builds images and ships tools
    /// for: Bazel's `@platforms//cpu` value (also `uname -m`), which names
    /// the tools' platform key `linux_<cpu>`.
    pub bazel_cpu: Option<&'static str>,
}

/// Every architecture the binary check knows. Those with a `bazel_cpu` are
/// the ones images are built for (`architecture` attributes, platforms,
/// toolchains).
pub const ARCHITECTURES: &[Architecture] = &[
    arch(
        "amd64",
        "",
        (62, 64, Endian::Little),
        Some("x86_64-linux-gnu"),
        Some("x86_64"),
    ),
    arch(
        "arm64",
        "v8",
        (183, 64, Endian::Little),
        Some("aarch64-linux-gnu"),
        Some("aarch64"),
    ),
    arch(
        "386",
        "",
        (3, 32, Endian::Little),
        Some("i386-linux-gnu"),
        None,
    ),
    arch(
        "arm",
        "",
        (40, 32, Endian::Little),
        Some("arm-linux-gnueabihf"),
        None,
    ),
    arch(
        "ppc64le",
        "",
        (21, 64, Endian::Little),
        Some("powerpc64le-linux-gnu"),
        None,
    ),
    arch("ppc64", "", (21, 64, Endian::Big), None, None),
    arch(
        "s390x",
        "",
        (22, 64, Endian::Big),
        Some("s390x-linux-gnu"),
        None,
    ),
    arch(
        "riscv64",
        "",
        (243, 64, Endian::Little),
        Some("riscv64-linux-gnu"),
        None,
    ),
    arch("loong64", "", (258, 64, Endian::Little), None, None),
    arch(
        "mips64le",
        "",
        (8, 64, Endian::Little),
        Some("mips64el-linux-gnuabi64"),
        None,
    ),
    arch("mips64", "", (8, 64, Endian::Big), None, None),
    arch("mipsle", "", (8, 32, Endian::Little), None, None),
    arch("mips", "", (8, 32, Endian::Big), None, None),
];

const fn arch(
    name: &'static str,
    variant: &'static str,
    elf: (u16, u8, Endian),
    multiarch: Option<&'static str>,
    bazel_cpu: Option<&'static str>,
) -> Architecture {
    Architecture {
        name,
        variant,
        elf,
        multiarch,
        bazel_cpu,
    }
}

/// `(architecture, variant)` pairs that mean the same image as the
/// architecture without a variant: images are published both ways.
pub const IMPLIED_VARIANTS: &[(&str, &str)] = &[("arm64", "v8"), ("amd64", "v1")];

/// The architecture named `name` (OCI spelling).
pub fn architecture(name: &str) -> Option<&'static Architecture> {
    ARCHITECTURES.iter().find(|a| a.name == name)
}

/// The architectures images are built for, in table order.
pub fn build_architectures() -> impl Iterator<Item = &'static Architecture> {
    ARCHITECTURES.iter().filter(|a| a.bazel_cpu.is_some())
}

/// `variant` with the spellings that mean "none" made `None`: an empty one,
/// and the variants [`IMPLIED_VARIANTS`] lists for `architecture`.
pub fn significant_variant<'a>(architecture: &str, variant: Option<&'a str>) -> Option<&'a str> {
    match variant {
        Some("") | None => None,
        Some(v) if IMPLIED_VARIANTS.contains(&(architecture, v)) => None,
        Some(v) => Some(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn architectures_are_listed_once_and_built_ones_have_distinct_cpus() {
        for (i, a) in ARCHITECTURES.iter().enumerate() {
            assert!(
                ARCHITECTURES[i + 1..].iter().all(|b| b.name != a.name),
                "{} listed twice",
                a.name
            );
        }
        let cpus: Vec<_> = build_architectures().filter_map(|a| a.bazel_cpu).collect();
        assert_eq!(cpus, ["x86_64", "aarch64"]);
    }

    #[test]
    fn implied_variants_are_dropped_and_others_kept() {
        assert_eq!(significant_variant("arm64", Some("v8")), None);
        assert_eq!(significant_variant("amd64", Some("v1")), None);
        assert_eq!(significant_variant("arm64", Some("")), None);
        assert_eq!(significant_variant("arm", Some("v7")), Some("v7"));
        assert_eq!(significant_variant("amd64", Some("v8")), Some("v8"));
    }
}
