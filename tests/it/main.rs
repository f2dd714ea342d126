//! Integration tests: h5ad files built with the hdf5 crate, converted by the real binary, and
//! read back through the lance crate.

mod architecture;
mod cli;
mod formats;
mod regression;
mod util;
mod workflow;
