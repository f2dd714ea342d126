//! 10x MatrixMarket directories: `matrix.mtx`, `barcodes.tsv`, `features.tsv`, each plain or
//! gzip. The input is the three files separated by `\n--8<--\n` (missing ones get a small
//! valid default); its first byte chooses which are gzip-compressed and the feature options.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use slaf_convert::readers::tenx::{TenxOptions, VarNames};
use slaf_convert::readers::{InputFormat, ReadOptions};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut parts = split(rest, b"\n--8<--\n");
    let matrix = parts.next().unwrap_or_default();
    let barcodes = parts.next().unwrap_or(b"AAAC-1\nAAAG-1\nAAAT-1\n");
    let features = parts
        .next()
        .unwrap_or(b"E1\tG1\tGene Expression\nE2\tG2\tGene Expression\n");
    let dir = tempfile::tempdir().unwrap();
    let gz = |bit: u8| flags & (1 << bit) != 0;
    write(dir.path(), "matrix.mtx", matrix, gz(0));
    write(dir.path(), "barcodes.tsv", barcodes, gz(1));
    write(dir.path(), "features.tsv", features, gz(2));
    let tenx = TenxOptions {
        var_names: if gz(3) { VarNames::GeneIds } else { VarNames::Symbols },
        make_unique: gz(4),
        feature_types: if gz(5) { vec!["Gene Expression".into()] } else { vec![] },
        ..TenxOptions::default()
    };
    let options = ReadOptions {
        format: Some(InputFormat::TenxMtx),
        tenx,
        ..ReadOptions::default()
    };
    slaf_convert_fuzz::exercise(dir.path(), &options);
});

fn split<'a>(data: &'a [u8], sep: &'a [u8]) -> impl Iterator<Item = &'a [u8]> {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let d = rest?;
        match d.windows(sep.len()).position(|w| w == sep) {
            Some(i) => {
                rest = Some(&d[i + sep.len()..]);
                Some(&d[..i])
            }
            None => {
                rest = None;
                Some(d)
            }
        }
    })
}

fn write(dir: &std::path::Path, name: &str, bytes: &[u8], gzip: bool) {
    if gzip {
        let file = std::fs::File::create(dir.join(format!("{name}.gz"))).unwrap();
        let mut enc = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap();
    } else {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}
