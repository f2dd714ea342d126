//! The library's option enums as command-line values: names and help for clap, kept here so
//! the library never depends on clap (the manifest's YAML names the same enums through serde;
//! a test keeps the two spellings equal).
//!
//! A field of type `Choice<T>` parses as one of T's names below; `.0` is the library's value.

use clap::builder::PossibleValue;
use clap::ValueEnum;
use slaf_convert::logging::LogFormat;
use slaf_convert::readers::tenx::VarNames;
use slaf_convert::readers::{InputFormat, RawMode};
use slaf_convert::slaf::schema::{Compression, IdTypes, Pages};

/// A library option enum, parsed from the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice<T>(pub T);

/// `ValueEnum` for `Choice<$ty>`: each variant with its command-line name and help.
macro_rules! choices {
    ($ty:ty { $($variant:expr => $name:literal $(alias $alias:literal)?: $help:literal,)+ }) => {
        impl ValueEnum for Choice<$ty> {
            fn value_variants<'a>() -> &'a [Self] {
                &[$(Choice($variant)),+]
            }

            fn to_possible_value(&self) -> Option<PossibleValue> {
                $(if self.0 == $variant {
                    return Some(PossibleValue::new($name)$(.alias($alias))?.help($help));
                })+
                None
            }
        }
    };
}

choices!(LogFormat {
    LogFormat::Auto => "auto": "JSON lines when stderr is not a terminal, human lines when it is",
    LogFormat::Json => "json": "One JSON object per line",
    LogFormat::Human => "human" alias "text": "Human-readable lines",
});

choices!(InputFormat {
    InputFormat::H5ad => "h5ad": "AnnData .h5ad",
    InputFormat::TenxMtx => "10x-mtx": "10x Genomics MTX directory",
    InputFormat::TenxH5 => "10x-h5": "Cell Ranger feature-barcode matrix .h5 (v2 or v3)",
    InputFormat::Soma => "tiledb-soma": "TileDB-SOMA experiment directory (needs libtiledb: --libtiledb)",
});

choices!(RawMode {
    RawMode::Ignore => "ignore": "Leave raw out (a log line says so)",
    RawMode::AsLayer => "as-layer": "Store raw.X as the layer \"raw\" of layers.lance; raw.var must list the same genes as var, in the same order (otherwise the conversion stops with an error)",
});

choices!(VarNames {
    VarNames::Symbols => "gene-symbols": "Gene symbols (features.tsv column 2, features/name)",
    VarNames::GeneIds => "gene-ids": "Feature ids (Ensembl ids: features.tsv column 1, features/id)",
});

choices!(IdTypes {
    IdTypes::Int32 => "int32": "int32 cell and gene ids: every upstream reader query works (recommended)",
    IdTypes::Compact => "compact": "Upstream's uint32/uint16: smaller, but upstream's get_gene_expression fails on them. Widened to int32 above 65,535 genes",
});

choices!(Compression {
    Compression::None => "none": "Bit-packing only: the fastest to write and to query, the size of upstream's output (default)",
    Compression::Lz4 => "lz4": "LZ4 on top: about a quarter smaller, but full passes over the data take 1.6-1.9x as long",
    Compression::Zstd => "zstd": "Zstandard on top: the smallest output, slower to write and to query",
});

choices!(Pages {
    Pages::Lance => "lance": "Lance's 8 MiB page buffer a column: 2-3 pages a fragment column, the fastest write (default)",
    Pages::OnePerFragment => "one-per-fragment": "One page a fragment column, as upstream writes: full passes 2.6 % cheaper, writes 7-13 % slower",
});

#[cfg(test)]
mod tests {
    use super::*;

    /// The command line and the manifest (serde) spell every value the same way.
    #[test]
    fn command_line_names_are_the_manifest_names() {
        fn check<T: serde::Serialize + Copy + 'static>()
        where
            Choice<T>: ValueEnum,
        {
            for v in Choice::<T>::value_variants() {
                let name = v.to_possible_value().unwrap().get_name().to_string();
                assert_eq!(
                    serde_json::to_value(v.0).unwrap().as_str(),
                    Some(name.as_str())
                );
            }
        }
        check::<InputFormat>();
        check::<RawMode>();
        check::<VarNames>();
        check::<IdTypes>();
        check::<Compression>();
        check::<Pages>();
    }
}
