// Converts the README example with the SLAF_CONVERT subworkflow:
//   nextflow run workflows/nextflow -profile docker   (or singularity / apptainer / local)
include { SLAF_CONVERT } from './subworkflows/slaf_convert/main'

params.manifest = "${projectDir}/example.manifest.yaml"
params.inputs   = "${projectDir}/../../examples/pbmc-like.h5ad"
params.outdir   = 'results'

workflow {
    ch = channel.of([ [id: 'pbmc'], file(params.manifest), files(params.inputs) ])
    SLAF_CONVERT(ch)
}
