//! Writes the CRD YAML for Weir's resources into `crds/`: `cargo run -p weir-crds --bin crdgen`.

use std::path::Path;

fn main() -> std::io::Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (file, yaml) in weir_crds::crd_files() {
        std::fs::write(dir.join(file), yaml)?;
        println!("wrote crds/{file}");
    }
    Ok(())
}
