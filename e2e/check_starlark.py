#!/usr/bin/env python3
"""Checks rules_kiln's Starlark for what Bazel 9 removes and Bazel 7.7.1 cannot refuse.

  e2e/check_starlark.py [ROOT]

Fails (exit 1, one line per finding) on:
- a native language rule (sh_*, cc_*, py_*, java_*, proto_*, objc_*, android_*)
  called in a BUILD file, a .bzl file or a BUILD file a .bzl file writes, unless
  the same file load()s that name; `native.<language rule>` anywhere;
- a language module (cc_common, CcInfo, JavaInfo, PyInfo, ProtoInfo, ...) used
  without a load() (what --incompatible_stop_exporting_language_modules checks;
  7.7.1's own bazel_tools fails under that switch);
- code that parses canonical repository names: splitting or searching on "~"
  or "+", or a canonical name spelled out ("rules_kiln~~kiln~x", "@@x+");
- a workspace .bazelrc whose `common:bazel9` lines differ from bazel9.bazelrc.
"""

import os
import re
import sys

ROOT = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), ".."))
SCANNED = ["rules", "examples", "e2e", "platforms", "settings", "BUILD.bazel", "MODULE.bazel"]
WORKSPACE_RCS = ["examples/.bazelrc", "e2e/basic/.bazelrc", "e2e/imagetest/.bazelrc"]

LANGUAGE_RULE = r"(?:sh|cc|py|java|proto|objc|android)_[a-z_]+"
# A call of a language rule: not a method (x.cc_foo), not a definition (def cc_foo).
RULE_CALL = re.compile(r"(?<![\w.])(?<!def )(" + LANGUAGE_RULE + r")\s*\(")
NATIVE_RULE = re.compile(r"\bnative\.(" + LANGUAGE_RULE + r")\b")
LANGUAGE_MODULE = re.compile(
    r"(?<![\w.\"'])(cc_common|CcInfo|CcToolchainInfo|CcSharedLibraryInfo|java_common|JavaInfo|JavaPluginInfo|"
    r"py_common|PyInfo|PyRuntimeInfo|proto_common|ProtoInfo|apple_common|android_common)\b"
)
CANONICAL_PARSE = re.compile(r"\.(?:r?split|r?partition|r?find|r?index|replace|startswith|endswith|count)\(\s*[\"'][~+]{1,2}[\"']")
CANONICAL_NAME = re.compile(r"[\"'][^\"'\n]*(?:@@[\w.-]+[~+]|\b[a-z][\w.-]*(?:~~|\+\+|~)[a-z][\w.-]*[~+][\w.-]+)")
LOADED = re.compile(r"\bload\(([^)]*)\)", re.S)


def starlark_files():
    for entry in SCANNED:
        path = os.path.join(ROOT, entry)
        if os.path.isfile(path):
            yield path
            continue
        for dirpath, dirnames, filenames in os.walk(path):
            # bazel-* links point into output bases; target/ is cargo's.
            dirnames[:] = [d for d in dirnames if not d.startswith("bazel-") and d not in ("target", ".git")]
            for name in filenames:
                if name.endswith(".bzl") or name in ("BUILD", "BUILD.bazel", "MODULE.bazel"):
                    yield os.path.join(dirpath, name)


def strip_comments(text):
    # Good enough for Starlark written by us: '#' starts a comment unless quoted.
    out = []
    for line in text.splitlines():
        quote = None
        for i, ch in enumerate(line):
            if quote:
                if ch == quote:
                    quote = None
            elif ch in "\"'":
                quote = ch
            elif ch == "#":
                line = line[:i]
                break
        out.append(line)
    return "\n".join(out)


def loaded_names(text):
    names = set()
    for args in LOADED.findall(text):
        names.update(re.findall(r"[\"']([A-Za-z_]\w*)[\"']", args))
        names.update(re.findall(r"\b([A-Za-z_]\w*)\s*=", args))
    return names


def check_file(path, findings):
    rel = os.path.relpath(path, ROOT)
    text = strip_comments(open(path, encoding="utf-8").read())
    loaded = loaded_names(text)
    for lineno, line in enumerate(text.splitlines(), 1):
        for name in NATIVE_RULE.findall(line):
            findings.append("%s:%d: native.%s: Bazel 9 has no native %s; load it from its rules module" % (rel, lineno, name, name))
        for name in RULE_CALL.findall(line):
            if name not in loaded:
                findings.append("%s:%d: %s is called but not load()ed in this file (Bazel 9 has no native %s)" % (rel, lineno, name, name))
        for name in LANGUAGE_MODULE.findall(line):
            if name not in loaded:
                findings.append("%s:%d: %s is used but not load()ed (Bazel 9 exports no language modules)" % (rel, lineno, name))
        if CANONICAL_PARSE.search(line) or CANONICAL_NAME.search(line):
            findings.append("%s:%d: parses or spells a canonical repository name; use Label / repository_name: %s" % (rel, lineno, line.strip()))


def config_lines(path):
    with open(path, encoding="utf-8") as rc:
        return [line.strip() for line in rc if line.startswith("common:bazel9 ")]


def check_bazelrcs(findings):
    want = config_lines(os.path.join(ROOT, "bazel9.bazelrc"))
    if not want:
        findings.append("bazel9.bazelrc: no common:bazel9 lines")
    with open(os.path.join(ROOT, ".bazelrc"), encoding="utf-8") as rc:
        if "import %workspace%/bazel9.bazelrc" not in rc.read().splitlines():
            findings.append(".bazelrc: does not import %workspace%/bazel9.bazelrc")
    for rel in WORKSPACE_RCS:
        got = config_lines(os.path.join(ROOT, rel))
        if got != want:
            findings.append("%s: common:bazel9 lines differ from bazel9.bazelrc (+%s -%s)" % (
                rel, sorted(set(got) - set(want)), sorted(set(want) - set(got))))


def main():
    findings = []
    count = 0
    for path in sorted(starlark_files()):
        count += 1
        check_file(path, findings)
    check_bazelrcs(findings)
    for finding in findings:
        print(finding)
    if findings:
        return 1
    print("%d Starlark files: no native language rule, language module or canonical name parsing; %d workspace .bazelrc files match bazel9.bazelrc" % (count, len(WORKSPACE_RCS)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
