//! The policy documentation's examples stay true: every ```yaml block of
//! docs/policies/*.md and of README.md's "Policies" section is applied to a
//! control plane through its REST API. Blocks marked `title="refused"` show
//! a manifest the API refuses, and must be refused; every other block must
//! be accepted as it stands.

mod support;

use std::path::{Path, PathBuf};

use kodiak_api::ResourceType;
use reqwest::StatusCode;
use serde_json::Value;
use support::Api;

/// The pages that must exist, each with at least one example a user can apply.
const PAGES: &[&str] = &[
    "README.md",
    "meshtimeout.md",
    "meshretry.md",
    "meshcircuitbreaker.md",
    "meshhealthcheck.md",
    "meshloadbalancingstrategy.md",
    "meshhttproute.md",
    "meshtcproute.md",
    "meshfaultinjection.md",
    "meshratelimit.md",
    "meshaccesslog.md",
    "meshproxypatch.md",
];

/// One fenced YAML block: where it is and what it holds.
#[derive(Debug)]
struct Block {
    file: String,
    line: usize,
    refused: bool,
    text: String,
}

/// The fenced ```yaml blocks of `markdown`; `file` names them in failures.
fn yaml_blocks(file: &str, markdown: &str, first_line: usize) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    for (index, line) in markdown.lines().enumerate() {
        let trimmed = line.trim_start();
        match open.as_mut() {
            Some(_) if trimmed.starts_with("```") => blocks.extend(open.take()),
            Some(block) => {
                block.text.push_str(line);
                block.text.push('\n');
            }
            None => {
                if let Some(info) = trimmed.strip_prefix("```yaml") {
                    open = Some(Block {
                        file: file.to_owned(),
                        line: first_line + index + 1,
                        refused: info.contains("title=\"refused\""),
                        text: String::new(),
                    });
                }
            }
        }
    }
    assert!(open.is_none(), "{file}: a ```yaml block is never closed");
    blocks
}

/// The documents of a block, split on `---` lines; empty ones left out.
fn documents(text: &str) -> Vec<String> {
    let mut documents = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "---" {
            documents.push(String::new());
        } else if let Some(current) = documents.last_mut() {
            current.push_str(line);
            current.push('\n');
        }
    }
    documents.retain(|document| document.lines().any(|line| !line.trim().is_empty() && !line.starts_with('#')));
    documents
}

/// The README's "Policies" section: from its heading to the next `## `.
fn readme_policies_section(readme: &str) -> (usize, String) {
    let lines: Vec<&str> = readme.lines().collect();
    let start =
        lines.iter().position(|line| line.trim_end() == "## Policies").expect("README.md has a ## Policies section");
    let end = lines[start + 1..].iter().position(|line| line.starts_with("## ")).map_or(lines.len(), |n| start + 1 + n);
    (start, lines[start..end].join("\n"))
}

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every block of the policy pages and of the README's Policies section.
fn all_blocks() -> Vec<Block> {
    let root = repository_root();
    let docs = root.join("docs/policies");
    let mut pages: Vec<PathBuf> = std::fs::read_dir(&docs)
        .unwrap_or_else(|e| panic!("{}: {e}", docs.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    pages.sort();
    let mut blocks = Vec::new();
    for page in pages {
        let name = format!("docs/policies/{}", page.file_name().unwrap().to_string_lossy());
        blocks.extend(yaml_blocks(&name, &std::fs::read_to_string(&page).unwrap(), 0));
    }
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let (start, section) = readme_policies_section(&readme);
    blocks.extend(yaml_blocks("README.md (Policies)", &section, start));
    blocks
}

/// The REST path a document is applied at, as `kodiakctl apply` does.
fn path_of(document: &Value) -> Result<String, String> {
    let kind = document["type"].as_str().ok_or("no type")?;
    let name = document["name"].as_str().ok_or("no name")?;
    let kind = ResourceType::from_any_name(kind).ok_or_else(|| format!("unknown type {kind}"))?;
    if kind == ResourceType::Mesh {
        return Ok(format!("/meshes/{name}"));
    }
    let mesh = document["mesh"].as_str().ok_or("no mesh")?;
    Ok(format!("/meshes/{mesh}/{}/{name}", kind.plural()))
}

/// Applies each document of `block` and returns what is wrong with it.
async fn check(api: &Api, block: &Block) -> Vec<String> {
    let mut problems = Vec::new();
    let documents = documents(&block.text);
    if documents.is_empty() {
        problems.push("the block holds no document".to_owned());
    }
    for (n, text) in documents.into_iter().enumerate() {
        let document: Value = match serde_yaml::from_str(&text) {
            Ok(document) => document,
            Err(e) => {
                problems.push(format!("document {n} is not YAML: {e}"));
                continue;
            }
        };
        let path = match path_of(&document) {
            Ok(path) => path,
            Err(e) => {
                problems.push(format!("document {n}: {e}"));
                continue;
            }
        };
        let (status, body) = api.put_text(&path, text).await;
        let accepted = status == StatusCode::OK || status == StatusCode::CREATED;
        if block.refused && status != StatusCode::BAD_REQUEST {
            problems.push(format!("document {n} (PUT {path}) should be refused with 400, got {status}: {body}"));
        }
        if !block.refused && !accepted {
            problems.push(format!("document {n} (PUT {path}) should be accepted, got {status}: {body}"));
        }
    }
    problems
}

#[tokio::test]
async fn every_policy_example_is_accepted_and_every_refused_one_refused() {
    let blocks = all_blocks();
    for page in PAGES {
        let accepted = blocks.iter().filter(|b| !b.refused && b.file.contains(page)).count();
        assert!(accepted > 0, "{page}: no example a user can apply (no ```yaml block)");
    }
    let mut failures = Vec::new();
    for block in &blocks {
        // Each block on a control plane of its own, so examples do not lean on
        // what another page applied.
        let api = Api::memory();
        for problem in check(&api, block).await {
            failures.push(format!("{} (block at line {}): {problem}", block.file, block.line));
        }
    }
    assert!(failures.is_empty(), "{} example(s) wrong:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn blocks_are_found_and_split_into_documents() {
    let markdown = "text\n```yaml\na: 1\n---\nb: 2\n```\n```yaml title=\"refused\"\nc: 3\n```\n```sh\nd\n```\n";
    let blocks = yaml_blocks("x.md", markdown, 0);
    assert_eq!(blocks.len(), 2, "{blocks:?}");
    assert_eq!((blocks[0].line, blocks[0].refused), (2, false));
    assert_eq!(documents(&blocks[0].text), vec!["a: 1\n", "b: 2\n"]);
    assert_eq!((blocks[1].line, blocks[1].refused), (7, true));
    assert_eq!(documents(&blocks[1].text), vec!["c: 3\n"]);
}

#[test]
fn the_readme_section_ends_at_the_next_heading() {
    let readme = "# K\n## Security\ns\n## Policies\n```yaml\na: 1\n```\n## Resources\n```yaml\nb: 2\n```\n";
    let (start, section) = readme_policies_section(readme);
    assert_eq!(start, 3);
    let blocks = yaml_blocks("README.md", &section, start);
    assert_eq!(blocks.len(), 1);
    assert_eq!((blocks[0].line, blocks[0].text.as_str()), (5, "a: 1\n"));
}
