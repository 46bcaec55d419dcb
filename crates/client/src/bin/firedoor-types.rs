//! `make types`: writes the UI's generated TypeScript types
//! (`ui/src/lib/generated.ts`, or the path given) from the Rust types.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let path = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(firedoor_client::ts::committed_path);
    std::fs::write(&path, firedoor_client::ts::typescript())?;
    println!("wrote {}", path.display());
    Ok(())
}
