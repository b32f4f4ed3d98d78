//! Random and mutated documents never make the parser or the validator
//! panic: whatever a user sends gets an answer.

use std::path::Path;

use kodiak_api::{Resource, ResourceType, parse_document, parse_documents};
use proptest::prelude::*;
use serde_json::{Map, Value};

/// Field names that appear in real documents, so random objects reach deep
/// into the schemas instead of stopping at the first unknown field.
const KEYS: &[&str] = &[
    "type",
    "name",
    "mesh",
    "labels",
    "spec",
    "targetRef",
    "kind",
    "to",
    "from",
    "rules",
    "default",
    "tags",
    "networking",
    "address",
    "inbound",
    "outbound",
    "port",
    "servicePort",
    "gateway",
    "mtls",
    "backends",
    "enabledBackend",
    "http",
    "requestTimeout",
    "matches",
    "path",
    "value",
    "backendRefs",
    "weight",
    "action",
    "kuma.io/service",
    "data",
    "enabled",
    "conf",
    "appendModifications",
    "cluster",
    "operation",
    "jsonPatches",
];

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[a-zA-Z0-9 ./:_-]{0,12}".prop_map(Value::String),
        prop::sample::select(vec!["5s", "-1s", "1h30m", "http", "Mesh", "MeshService", "web", "STRICT", "Allow"])
            .prop_map(Value::from),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS.to_vec()), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}

fn document() -> impl Strategy<Value = Value> {
    let types: Vec<&str> = ResourceType::ALL.iter().map(|t| t.name()).collect();
    (prop::sample::select(types), value()).prop_map(|(kind, body)| {
        let mut object = match body {
            Value::Object(object) => object,
            other => Map::from_iter([("spec".to_owned(), other)]),
        };
        object.insert("type".into(), kind.into());
        object.entry("name").or_insert("x".into());
        object.entry("mesh").or_insert("default".into());
        Value::Object(object)
    })
}

/// Every document of the valid corpus, to mutate.
fn corpus() -> &'static [Value] {
    static CORPUS: std::sync::OnceLock<Vec<Value>> = std::sync::OnceLock::new();
    CORPUS.get_or_init(read_corpus)
}

fn read_corpus() -> Vec<Value> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/documents/valid");
    let mut documents = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        documents.extend(parse_documents(&text).unwrap());
    }
    documents
}

/// Replaces the value at the `pick`-th node (in a depth-first walk) with `new`.
fn replace_nth(value: &mut Value, pick: &mut usize, new: &Value) -> bool {
    if *pick == 0 {
        *value = new.clone();
        return true;
    }
    *pick -= 1;
    match value {
        Value::Array(items) => items.iter_mut().any(|item| replace_nth(item, pick, new)),
        Value::Object(fields) => fields.values_mut().any(|field| replace_nth(field, pick, new)),
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_documents_never_panic(doc in document()) {
        let _ = Resource::from_document(&doc);
    }

    #[test]
    fn mutated_real_documents_never_panic(index in any::<prop::sample::Index>(), node in 1usize..200, new in value()) {
        let documents = corpus();
        let mut doc = documents[index.index(documents.len())].clone();
        let mut pick = node;
        replace_nth(&mut doc, &mut pick, &new);
        if let Ok(resource) = Resource::from_document(&doc) {
            // Whatever is accepted reads back as itself.
            prop_assert!(Resource::from_document(&resource.to_document()).is_ok());
        }
    }

    #[test]
    fn random_text_never_panics(text in "(\\PC|\n|\t){0,200}") {
        let _ = parse_documents(&text).map(|docs| docs.iter().map(Resource::from_document).count());
        let _ = parse_document(&text);
    }
}
