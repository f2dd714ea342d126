//! The shape of `src/`, checked from the source text: the module graph has no cycle, clap
//! stays in the command-line layer, and files stay small enough to read in one sitting.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Directories under `src/` that only group modules: their children are the graph's nodes.
const GROUPS: &[&str] = &["workflow", "slaf"];
/// Where clap may appear: argument parsing and the binary.
const CLAP_ALLOWED: &[&str] = &["cli.rs", "cli/", "main.rs"];
const MAX_LINES: usize = 500;

/// Imports that would run against the flow (workflow → pipeline → readers | slaf → the shared
/// vocabulary): a node whose name starts with the first may not import one starting with
/// any of the second.
const FORBIDDEN: &[(&str, &[&str])] = &[
    ("readers", &["slaf", "pipeline", "workflow"]),
    ("slaf", &["readers", "pipeline", "workflow"]),
    ("pipeline", &["workflow"]),
    ("cells", &["readers", "slaf", "pipeline", "workflow"]),
    ("values", &["readers", "slaf", "pipeline", "workflow"]),
    ("columns", &["readers", "slaf", "pipeline", "workflow"]),
    ("error", &["readers", "slaf", "pipeline", "workflow"]),
    ("logging", &["readers", "slaf", "pipeline", "workflow"]),
    ("json_file", &["readers", "slaf", "pipeline", "workflow"]),
    ("crash_report", &["readers", "slaf", "pipeline", "workflow"]),
    ("location", &["readers", "slaf", "pipeline", "workflow"]),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `src/`, as (path relative to `src/`, text without comments).
fn sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&src(), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let rel = p
                .strip_prefix(src())
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(&p).unwrap();
            let code: Vec<&str> = text
                .lines()
                .map(|l| l.find("//").map_or(l, |i| &l[..i]))
                .collect();
            (rel, code.join("\n"))
        })
        .collect()
}

/// The graph node a module path belongs to: `plan/dataset.rs` → `plan`,
/// `workflow/plan/dataset.rs` → `workflow::plan`.
fn node(segments: &[&str]) -> Option<String> {
    let first = *segments.first()?;
    if GROUPS.contains(&first) {
        Some(format!("{first}::{}", segments.get(1)?))
    } else {
        Some(first.to_string())
    }
}

fn file_node(rel: &str) -> Option<String> {
    let segments: Vec<&str> = rel.trim_end_matches(".rs").split('/').collect();
    match segments.as_slice() {
        ["lib"] | ["main"] => None,
        [group] if GROUPS.contains(group) => None,
        _ => node(&segments),
    }
}

/// The nodes a file's `crate::` paths name: plain paths, and use trees with groups at any
/// depth (`use crate::{a::x, b::{c, d}}`, `use crate::workflow::{plan::Plan}`).
fn referenced(code: &str) -> BTreeSet<String> {
    let mut paths = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        expand(&use_tree(&code[i + "crate::".len()..]), &[], &mut paths);
    }
    paths
        .iter()
        .filter_map(|p| node(&p.iter().map(String::as_str).collect::<Vec<_>>()))
        .collect()
}

/// The path or use tree at the start of `text`: path characters, and braces with what they
/// hold, up to the end of the tree.
fn use_tree(text: &str) -> String {
    let mut tree = String::new();
    let mut depth = 0usize;
    for c in text.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            c if depth == 0 && !(c.is_alphanumeric() || c == '_' || c == ':') => break,
            _ => {}
        }
        tree.push(c);
        if c == '}' && depth == 0 {
            break;
        }
    }
    tree
}

/// Every full path in the use tree `tree` below `prefix`.
fn expand(tree: &str, prefix: &[String], out: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    let segments = |head: &str| -> Vec<String> {
        let mut path = prefix.to_vec();
        path.extend(
            head.split("::")
                .map(str::trim)
                .filter(|s| !s.is_empty() && *s != "self")
                .map(String::from),
        );
        path
    };
    let Some(open) = tree.find('{') else {
        // A leaf: `path` or `path as alias`.
        out.push(segments(tree.split(" as ").next().unwrap_or(tree)));
        return;
    };
    let base = segments(&tree[..open]);
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                expand(&inner[start..i], &base, out);
                start = i + 1;
            }
            _ => {}
        }
    }
    if !inner[start..].trim().is_empty() {
        expand(&inner[start..], &base, out);
    }
}

fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, code) in sources() {
        let Some(from) = file_node(&rel) else {
            continue;
        };
        let edges = graph.entry(from.clone()).or_default();
        edges.extend(referenced(&code).into_iter().filter(|to| *to != from));
    }
    graph
}

/// A cycle in `graph`, as the nodes on it, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            return Some(path[at..].to_vec());
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, done, path) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut done, &mut Vec::new()))
}

#[test]
fn module_graph_has_no_cycle() {
    let graph = module_graph();
    assert!(graph.len() > 10, "too few modules found: {graph:?}");
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "modules import each other in a cycle: {}",
            cycle.join(" → ")
        );
    }
}

#[test]
fn imports_follow_the_flow() {
    let graph = module_graph();
    let mut against = Vec::new();
    for (from, targets) in &graph {
        for (layer, forbidden) in FORBIDDEN {
            if !from.starts_with(layer) {
                continue;
            }
            for to in targets {
                if forbidden.iter().any(|f| to.starts_with(f)) {
                    against.push(format!("{from} → {to}"));
                }
            }
        }
    }
    assert!(against.is_empty(), "imports against the flow: {against:?}");
}

#[test]
fn cycle_finder_finds_cycles() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec![]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(find_cycle(&graph).map(|c| c.len()), Some(3));
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(
        referenced(
            "use crate::{error::Result, workflow::plan::Plan};\nlet x = crate::slaf::tables::f();"
        ),
        names(&["error", "workflow::plan", "slaf::tables"])
    );
    assert_eq!(
        referenced(
            "use crate::workflow::{plan::Plan, shard};\nuse crate::{cells::{self, Axis}, slaf::{schema::X, tables as t}};"
        ),
        names(&["workflow::plan", "workflow::shard", "cells", "slaf::schema", "slaf::tables"])
    );
}

#[test]
fn clap_only_in_the_command_line_layer() {
    let offenders: Vec<String> = sources()
        .into_iter()
        .filter(|(rel, code)| {
            !CLAP_ALLOWED.iter().any(|a| rel.starts_with(a)) && code.contains("clap")
        })
        .map(|(rel, _)| rel)
        .collect();
    assert!(
        offenders.is_empty(),
        "clap used outside src/cli: {offenders:?}"
    );
}

#[test]
fn files_stay_under_the_line_limit() {
    let long: Vec<String> = sources()
        .into_iter()
        .filter_map(|(rel, _)| {
            let lines = std::fs::read_to_string(src().join(&rel))
                .unwrap()
                .lines()
                .count();
            (lines > MAX_LINES).then(|| format!("{rel}: {lines} lines"))
        })
        .collect();
    assert!(long.is_empty(), "files over {MAX_LINES} lines: {long:?}");
}
