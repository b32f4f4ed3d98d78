//! The document corpus: every file under `documents/valid` must be accepted
//! unchanged, every file under `documents/invalid` must be refused with
//! exactly the violations its `# expect: <field path>` header lines name.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use kodiak_api::{Resource, parse_documents};

fn corpus(folder: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/documents").join(folder);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no documents in {}", dir.display());
    files
}

#[test]
fn valid_documents_are_accepted_and_round_trip() {
    for file in corpus("valid") {
        let text = std::fs::read_to_string(&file).unwrap();
        let documents = parse_documents(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(!documents.is_empty(), "{}: no documents", file.display());
        for (i, document) in documents.iter().enumerate() {
            let resource = Resource::from_document(document)
                .unwrap_or_else(|e| panic!("{} document {i} was refused:\n{e}", file.display()));
            assert_eq!(&resource.to_document(), document, "{} document {i} does not round-trip", file.display());
        }
    }
}

#[test]
fn invalid_documents_report_exactly_the_expected_fields() {
    for file in corpus("invalid") {
        let text = std::fs::read_to_string(&file).unwrap();
        let expected: BTreeSet<String> = text
            .lines()
            .filter_map(|line| line.strip_prefix("# expect: "))
            .map(|field| field.trim().to_owned())
            .collect();
        assert!(!expected.is_empty(), "{}: no '# expect: <field>' header", file.display());
        let documents = parse_documents(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert_eq!(documents.len(), 1, "{}: one document per invalid file", file.display());
        let violations =
            Resource::from_document(&documents[0]).err().unwrap_or_else(|| panic!("{} was accepted", file.display()));
        let found: BTreeSet<String> = violations.iter().map(|v| v.field.clone()).collect();
        assert_eq!(found, expected, "{}: violations were:\n{violations}", file.display());
    }
}
