//! The user documentation holds together: every relative link in
//! `README.md` and `docs/**/*.md` points to a file that exists (and, with a
//! `#fragment`, to a heading of that file), and every one of these pages
//! with Rust blocks is compiled as a doctest by some crate (an
//! `include_str!` of the page in a crate's `lib.rs`), and every page can be
//! reached by following links from `README.md`.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Component, Path, PathBuf};

/// The repository root (this crate lives in `tests/`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent directory")
        .to_path_buf()
}

/// `README.md` and every `.md` file under `docs/`, relative to the root, sorted.
fn pages() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let entries =
            fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|ext| ext == "md") {
                out.push(path);
            }
        }
    }
    let root = root();
    let mut out = vec![root.join("README.md")];
    walk(&root.join("docs"), &mut out);
    let mut out: Vec<PathBuf> = out
        .into_iter()
        .map(|p| p.strip_prefix(&root).expect("under the root").to_path_buf())
        .collect();
    out.sort();
    out
}

/// The lines of a page outside fenced code blocks, as written, with their
/// line numbers (1-based).
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut fence: Option<&str> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        match fence {
            Some(marker) => {
                if trimmed.starts_with(marker) {
                    fence = None;
                }
            }
            None if trimmed.starts_with("```") => fence = Some("```"),
            None if trimmed.starts_with("~~~") => fence = Some("~~~"),
            None => out.push((i + 1, line)),
        }
    }
    out
}

/// Replaces the contents of `` `code` `` spans by spaces, so that link-like
/// text inside them is not taken for a link.
fn blank_inline_code(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut in_code = false;
    for c in line.chars() {
        if c == '`' {
            in_code = !in_code;
            out.push(c);
        } else if in_code {
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    out
}

/// Targets of the inline links `[text](target)` and images in one line.
fn link_targets(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(pos) = rest.find("](") {
        let after = &rest[pos + 2..];
        // The target ends at the matching ')' (targets here have no
        // nested parentheses) or at a space before a title.
        let end = after.find([')', ' ']).unwrap_or(after.len());
        out.push(after[..end].to_string());
        rest = &after[end..];
    }
    out
}

/// GitHub's anchor for a heading: lowercase; letters, digits, `-` and `_`
/// kept; spaces become `-`; everything else dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a page's headings, with GitHub's `-1`, `-2` suffixes for
/// repeated ones.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (_, line) in prose_lines(text) {
        let trimmed = line.trim_start();
        if !trimmed.starts_with('#') {
            continue;
        }
        let title = trimmed.trim_start_matches('#');
        if !title.starts_with(' ') {
            continue;
        }
        let base = slug(title);
        let mut candidate = base.clone();
        let mut n = 0;
        while out.contains(&candidate) {
            n += 1;
            candidate = format!("{base}-{n}");
        }
        out.insert(candidate);
    }
    out
}

/// Whether a link target is a path in this repository (not a URL).
fn is_relative(target: &str) -> bool {
    !(target.is_empty()
        || target.contains("://")
        || target.starts_with("mailto:")
        || target.starts_with('<'))
}

/// Joins `target` to `dir` and folds `.` and `..`.
fn resolve(dir: &Path, target: &str) -> PathBuf {
    let mut out = PathBuf::new();
    for component in dir.join(target).components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[test]
fn slugs_follow_github() {
    assert_eq!(
        slug("Run workers as their own binary"),
        "run-workers-as-their-own-binary"
    );
    assert_eq!(
        slug("saga_trip_booking — compensations in reverse order"),
        "saga_trip_booking--compensations-in-reverse-order"
    );
    assert_eq!(
        slug("batch_processing — `Stent::map` over 10,000 items with a concurrency limit"),
        "batch_processing--stentmap-over-10000-items-with-a-concurrency-limit"
    );
    assert_eq!(
        slug("Per-execution options: `dispatch`"),
        "per-execution-options-dispatch"
    );
    let text = "# A\n\n## Notes\n\n```\n# not a heading\n```\n\n## Notes\n";
    let found: Vec<String> = anchors(text).into_iter().collect();
    assert_eq!(found, ["a", "notes", "notes-1"]);
    assert_eq!(
        link_targets("see [x](a.md#b) and [`y`](../c.md \"t\")"),
        ["a.md#b", "../c.md"]
    );
}

#[test]
fn every_relative_link_resolves() {
    let root = root();
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in pages() {
        let text = fs::read_to_string(root.join(&page))
            .unwrap_or_else(|e| panic!("reading {}: {e}", page.display()));
        let dir = page.parent().unwrap_or(Path::new(""));
        for (line_no, line) in prose_lines(&text) {
            for target in link_targets(&blank_inline_code(line)) {
                if !is_relative(&target) {
                    continue;
                }
                checked += 1;
                let (file, fragment) = match target.split_once('#') {
                    Some((file, fragment)) => (file, Some(fragment)),
                    None => (target.as_str(), None),
                };
                let file = if file.is_empty() {
                    page.clone()
                } else {
                    resolve(dir, file)
                };
                let where_ = format!("{}:{line_no}: ({target})", page.display());
                let full = root.join(&file);
                if !full.exists() {
                    broken.push(format!("{where_}: {} does not exist", file.display()));
                    continue;
                }
                if let Some(fragment) = fragment {
                    if full.is_dir() || full.extension().is_none_or(|ext| ext != "md") {
                        broken.push(format!(
                            "{where_}: an anchor into a file that is not markdown"
                        ));
                        continue;
                    }
                    let target_text = fs::read_to_string(&full)
                        .unwrap_or_else(|e| panic!("reading {}: {e}", full.display()));
                    let known = anchors(&target_text);
                    if !known.contains(fragment) {
                        broken.push(format!(
                            "{where_}: no heading with anchor #{fragment} in {}; its anchors: {}",
                            file.display(),
                            known.into_iter().collect::<Vec<_>>().join(", ")
                        ));
                    }
                }
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} links found: is the scanner broken?"
    );
    assert!(
        broken.is_empty(),
        "broken links in the docs:\n{}",
        broken.join("\n")
    );
}

#[test]
fn every_page_with_rust_blocks_is_compiled() {
    let root = root();
    // The crates whose lib.rs include docs pages as doctests.
    let includers = ["engine/src/lib.rs", "engine/cli/src/lib.rs"];
    let mut included = BTreeSet::new();
    for file in includers {
        let source =
            fs::read_to_string(root.join(file)).unwrap_or_else(|e| panic!("reading {file}: {e}"));
        let dir = Path::new(file).parent().expect("a file has a directory");
        let mut rest = source.as_str();
        while let Some(pos) = rest.find("include_str!(\"") {
            let after = &rest[pos + "include_str!(\"".len()..];
            let end = after.find('"').expect("a closing quote");
            included.insert(resolve(dir, &after[..end]));
            rest = &after[end..];
        }
    }
    let mut missing = Vec::new();
    for page in pages() {
        let text = fs::read_to_string(root.join(&page))
            .unwrap_or_else(|e| panic!("reading {}: {e}", page.display()));
        let has_rust = text.lines().any(|l| {
            let info = l.trim_start().strip_prefix("```").unwrap_or("");
            info.split(',')
                .next()
                .is_some_and(|lang| lang.trim() == "rust")
        });
        if has_rust && !included.contains(&page) {
            missing.push(page.display().to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "pages with ```rust blocks that no crate compiles as doctests (add an \
         include_str! of each to the user_guide module of engine/src/lib.rs): {missing:?}"
    );
}

#[test]
fn every_page_is_reachable_from_the_readme() {
    let root = root();
    let start = PathBuf::from("README.md");
    let mut seen = BTreeSet::from([start.clone()]);
    let mut queue = vec![start];
    while let Some(page) = queue.pop() {
        let Ok(text) = fs::read_to_string(root.join(&page)) else {
            continue; // a broken link: every_relative_link_resolves reports it
        };
        let dir = page.parent().unwrap_or(Path::new("")).to_path_buf();
        for (_, line) in prose_lines(&text) {
            for target in link_targets(&blank_inline_code(line)) {
                let file = target.split('#').next().unwrap_or("");
                if !is_relative(&target) || !file.ends_with(".md") {
                    continue;
                }
                let linked = resolve(&dir, file);
                if seen.insert(linked.clone()) {
                    queue.push(linked);
                }
            }
        }
    }
    let orphans: Vec<String> = pages()
        .into_iter()
        .filter(|page| !seen.contains(page))
        .map(|page| page.display().to_string())
        .collect();
    assert!(
        orphans.is_empty(),
        "pages no link from README.md leads to (link them from docs/README.md): {orphans:?}"
    );
}
