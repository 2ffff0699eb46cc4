#!/usr/bin/env python3
"""Check the relative links and images of every Markdown file in the repository.

    python3 scripts/check-links.py [REPO_ROOT]

Every Markdown file that git knows (tracked, or new and not ignored; without git: every *.md under the root
outside hidden, build and out folders) is read. For each inline link or image `[text](target)` / `![alt](target)`, reference
definition `[name]: target` and HTML `<a href>` / `<img src>`:
  - external targets (http:, https:, mailto:, any other scheme, or //host) are not fetched;
  - a path must exist (file or folder), relative to the linking file; a leading `/` means the repository root;
  - a `#fragment` that points into a Markdown file (or `#fragment` alone: the same file) must match a heading
    of that file by GitHub's rules (lowercase; punctuation other than `-`, `_` and spaces removed, as are
    symbols; spaces become `-`; repeated headings get `-1`, `-2`, ...) or an explicit `id`/`name` anchor.
Links inside fenced or indented code blocks and inside code spans are ignored.

Exit status 0 when every link resolves; otherwise 1, with one line per broken link:
    file:line: broken link -> target (reason)
Python standard library only.
"""

import os
import re
import subprocess
import sys
import unicodedata
import urllib.parse

SKIP_DIRS = {"node_modules", "__pycache__"}
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
ATX_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t]*#*[ \t]*$")
SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
REF_DEF = re.compile(r"^ {0,3}\[([^\]]+)\]:\s*(<[^>]*>|\S+)")
HTML_ATTR = re.compile(r"<(?:a|img|source)\b[^>]*?\b(?:href|src)\s*=\s*[\"']([^\"']*)[\"']", re.I)
HTML_ID = re.compile(r"<[A-Za-z][^>]*?\b(?:id|name)\s*=\s*[\"']([^\"']+)[\"']", re.I)


def markdown_files(root):
    """The Markdown files git knows (tracked or new and not ignored), else every *.md outside hidden, build and out folders."""
    try:
        out = subprocess.run(
            ["git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", "*.md"],
            check=True, capture_output=True).stdout.decode("utf-8")
        files = sorted({f for f in out.split("\0") if f})
        return [f for f in files if os.path.isfile(os.path.join(root, f))]
    except (OSError, subprocess.CalledProcessError):
        found = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames
                           if d not in SKIP_DIRS and not d.startswith((".", "build")) and d != "out"]
            for name in filenames:
                if name.endswith(".md"):
                    found.append(os.path.relpath(os.path.join(dirpath, name), root))
        return sorted(found)


def prose_lines(text):
    """Yields (line number, line) outside fenced and indented code blocks, with code spans blanked out."""
    fence = None
    in_indented = False
    list_context = False
    previous_blank = True
    for number, line in enumerate(text.split("\n"), 1):
        if fence:
            if re.match(r"^ {0,3}" + re.escape(fence[0]) + "{" + str(len(fence)) + r",}\s*$", line):
                fence = None
            previous_blank = False
            continue
        m = FENCE.match(line)
        if m:
            fence = m.group(1)
            in_indented = False
            continue
        blank = not line.strip()
        indent = len(line.expandtabs(4)) - len(line.expandtabs(4).lstrip(" "))
        if in_indented:
            if blank or line.startswith("    ") or line.startswith("\t"):
                previous_blank = blank
                continue
            in_indented = False
        elif previous_blank and not blank and not list_context and (line.startswith("    ") or line.startswith("\t")):
            in_indented = True
            previous_blank = False
            continue
        if not blank:
            if LIST_ITEM.match(line):
                list_context = True
            elif previous_blank and indent == 0:
                list_context = False
        previous_blank = blank
        yield number, blank_code_spans(line)


def blank_code_spans(line):
    """Replaces `code spans` by spaces so that their contents are not read as links."""
    out = []
    i = 0
    while i < len(line):
        if line[i] == "`":
            run = len(line) - len(line[i:].lstrip("`"))
            ticks = line[i:i + run]
            end = line.find(ticks, i + run)
            while end != -1 and end + run < len(line) and line[end + run] == "`":
                end = line.find(ticks, end + run + 1)
            if end == -1:
                out.append(ticks)
                i += run
                continue
            out.append(" " * (end + run - i))
            i = end + run
        else:
            out.append(line[i])
            i += 1
    return "".join(out)


def inline_targets(line):
    """The targets of inline links and images on one line: `[text](target "title")`."""
    targets = []
    i = 0
    while True:
        start = line.find("](", i)
        if start == -1:
            break
        j = start + 2
        while j < len(line) and line[j] in " \t":
            j += 1
        if j < len(line) and line[j] == "<":
            end = line.find(">", j)
            if end == -1:
                i = start + 2
                continue
            targets.append(line[j + 1:end])
            i = end + 1
            continue
        depth = 0
        k = j
        while k < len(line):
            c = line[k]
            if c == "\\":
                k += 2
                continue
            if c == "(":
                depth += 1
            elif c == ")":
                if depth == 0:
                    break
                depth -= 1
            elif c in " \t" and depth == 0:
                break
            k += 1
        target = line[j:k]
        if target:
            targets.append(target)
        i = max(k, start + 2)
    return targets


def heading_text(raw):
    """The rendered text of a heading: links and images by their text, code and emphasis markers removed."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", raw)
    text = re.sub(r"<[^>]+>", "", text)
    text = text.replace("`", "")
    text = re.sub(r"(\*+|(?<!\w)_+|_+(?!\w))", "", text)
    return text.strip()


def slug(text):
    """GitHub's anchor for a heading's text."""
    text = heading_text(text).lower()
    text = "".join(c for c in text if c in " -" or unicodedata.category(c)[0] in "LMN" or unicodedata.category(c) == "Pc")
    return text.replace(" ", "-")


_anchor_cache = {}


def anchors_of(path):
    if path in _anchor_cache:
        return _anchor_cache[path]
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    anchors = set()
    counts = {}
    previous = None
    fence = None
    for line in text.split("\n"):
        if fence:
            if re.match(r"^ {0,3}" + re.escape(fence[0]) + "{" + str(len(fence)) + r",}\s*$", line):
                fence = None
            previous = None
            continue
        m = FENCE.match(line)
        if m:
            fence = m.group(1)
            previous = None
            continue
        for anchor in HTML_ID.findall(line):
            anchors.add(anchor.lower())
        heading = None
        m = ATX_HEADING.match(line)
        if m and not line.startswith("    "):
            heading = m.group(2) or ""
        elif previous is not None and SETEXT.match(line) and previous.strip() and \
                not LIST_ITEM.match(previous) and not previous.startswith("    ") and \
                not previous.lstrip().startswith("|"):
            heading = previous.strip()
        if heading is not None:
            base = slug(heading)
            n = counts.get(base, 0)
            counts[base] = n + 1
            anchors.add(base if n == 0 else "%s-%d" % (base, n))
            previous = None
            continue
        previous = line
    _anchor_cache[path] = anchors
    return anchors


def check_target(root, source, target):
    """None if the target resolves, else the reason it does not."""
    target = target.strip()
    if target.startswith("<") and target.endswith(">"):
        target = target[1:-1]
    if not target or SCHEME.match(target) or target.startswith("//"):
        return None
    path_part, _, fragment = target.partition("#")
    path_part = urllib.parse.unquote(path_part.split("?", 1)[0])
    fragment = urllib.parse.unquote(fragment)
    source_abs = os.path.join(root, source)
    if not path_part:
        resolved = source_abs
    elif path_part.startswith("/"):
        resolved = os.path.join(root, path_part.lstrip("/"))
    else:
        resolved = os.path.join(os.path.dirname(source_abs), path_part)
    resolved = os.path.normpath(resolved)
    root_abs = os.path.normpath(os.path.abspath(root))
    if os.path.commonpath([os.path.abspath(resolved), root_abs]) != root_abs:
        return "outside the repository"
    if not os.path.exists(resolved):
        return "no such file"
    if fragment and resolved.endswith(".md") and os.path.isfile(resolved):
        if fragment.lower() not in anchors_of(resolved):
            return "no heading #%s in %s" % (fragment, os.path.relpath(resolved, root))
    return None


def check_file(root, source):
    problems = []
    with open(os.path.join(root, source), encoding="utf-8", errors="replace") as f:
        text = f.read()
    for number, line in prose_lines(text):
        targets = inline_targets(line)
        m = REF_DEF.match(line)
        if m:
            targets.append(m.group(2))
        targets.extend(HTML_ATTR.findall(line))
        for target in targets:
            reason = check_target(root, source, target)
            if reason:
                problems.append("%s:%d: broken link -> %s (%s)" % (source, number, target, reason))
    return problems


def main(argv):
    if len(argv) > 2 or (len(argv) == 2 and argv[1] in ("-h", "--help")):
        print(__doc__.strip())
        return 0 if len(argv) == 2 else 2
    root = argv[1] if len(argv) == 2 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    root = os.path.abspath(root)
    if not os.path.isdir(root):
        print("check-links: no such folder: %s" % root, file=sys.stderr)
        return 2
    files = markdown_files(root)
    problems = []
    for source in files:
        problems.extend(check_file(root, source))
    if problems:
        print("\n".join(problems))
        print("check-links: %d broken link(s) in %d Markdown files" % (len(problems), len(files)), file=sys.stderr)
        return 1
    print("check-links: every relative link resolves (%d Markdown files)" % len(files))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
