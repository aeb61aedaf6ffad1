//! Prints the CRD YAML for Weir's resources: `cargo run -p weir-crds --bin crdgen > crds/route.yaml`.

fn main() {
    print!("{}", weir_crds::crd_yaml());
}
