//! Fuzz target: manifest decoding, the control plane's first contact with what users write.
//!
//! The input is read as a YAML file (`source::files::parse_documents`, as standalone mode reads
//! a config directory: several documents, every kind) and as JSON (`Object::decode`, as the
//! Kubernetes source's objects arrive). A JSON object is then decoded once more as each kind
//! Weir reads, its `apiVersion` and `kind` overwritten, so every kind's decoder sees every
//! shape. None of this may panic; errors are the expected answer to most inputs. What decodes
//! is asked what the store asks of it (key, part-of, change detection).

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use weir_controlplane::{Object, kinds::KINDS, source::files::parse_documents};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(documents) = parse_documents(text)
    {
        for (_, object) in documents {
            if let Ok(object) = object {
                ask(&object);
            }
        }
    }
    if let Ok(value) = serde_json::from_slice::<Value>(data) {
        decode(value.clone());
        if value.is_object() {
            for info in KINDS {
                let mut as_kind = value.clone();
                as_kind["apiVersion"] = info.api_version.into();
                as_kind["kind"] = info.name.into();
                decode(as_kind);
            }
        }
    }
});

fn decode(value: Value) {
    if let Ok(object) = Object::decode(value) {
        ask(&object);
    }
}

/// What the store asks of an object it files.
fn ask(object: &Object) {
    let key = object.key();
    let _ = key.to_string();
    assert_eq!(key.kind, object.kind());
    let _ = object.part_of();
    assert!(
        object.same_for_weir(object),
        "an object is the same as itself"
    );
}
