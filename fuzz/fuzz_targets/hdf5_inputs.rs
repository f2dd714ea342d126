//! The HDF5 readers on mutated files: AnnData `.h5ad` (direct chunk reader, dataframes,
//! uns, layers, obsm/obsp) and Cell Ranger `.h5`. The input's first byte picks the reader and
//! options; the rest is the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use slaf_convert::readers::tenx::TenxOptions;
use slaf_convert::readers::{InputFormat, RawMode, ReadOptions};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, file)) = data.split_first() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("input.h5");
    std::fs::write(&path, file).unwrap();
    let options = ReadOptions {
        format: Some(if flags & 1 == 0 {
            InputFormat::H5ad
        } else {
            InputFormat::TenxH5
        }),
        raw: if flags & 2 == 0 {
            RawMode::Ignore
        } else {
            RawMode::AsLayer
        },
        tenx: TenxOptions {
            feature_types: if flags & 4 == 0 { vec![] } else { vec!["Gene Expression".into()] },
            ..TenxOptions::default()
        },
        ..ReadOptions::default()
    };
    slaf_convert_fuzz::exercise(&path, &options);
});
