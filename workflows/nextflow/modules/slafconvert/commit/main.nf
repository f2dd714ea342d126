process SLAFCONVERT_COMMIT {
    tag "$meta.id"
    label 'process_single'

    // One image for every engine: Singularity and Apptainer pull it as docker://; a local SIF
    // replaces it with withName: 'SLAFCONVERT_.*' { container = '/path/to/slaf-convert_0.1.0.sif' }.
    container 'ghcr.io/slaf-convert/slaf-convert:0.1.0'

    input:
    tuple val(meta), path(fragments, stageAs: 'shards/*'), path(plan)

    output:
    // Not emitted when task.ext.dataset puts the dataset in an object store.
    tuple val(meta), path("${prefix}.slaf"), emit: slaf, optional: true
    tuple val(meta), path("${prefix}.slaf/_SLAF_COMPLETE.json"), emit: marker, optional: true
    // Where the dataset is: "${prefix}.slaf" in the task directory, or task.ext.dataset.
    tuple val(meta), val(dataset), emit: dataset
    tuple val("${task.process}"), val('slaf-convert'), eval("slaf-convert --version | sed 's/.* //'"), topic: versions, emit: versions_slafconvert

    when:
    task.ext.when == null || task.ext.when

    script:
    // No conda package exists yet: refuse -profile conda/mamba with a clear message instead
    // of a solver failure (nf-core's guard for container-only modules).
    if (workflow.profile.tokenize(',').intersect(['conda', 'mamba']).size() >= 1) {
        error "SLAFCONVERT_COMMIT does not support Conda yet: use Docker, Singularity or Apptainer (-profile docker|singularity|apptainer)."
    }
    def args = task.ext.args ?: ''
    prefix = task.ext.prefix ?: "${meta.id}"
    // task.ext.dataset: an s3://, gs:// or az:// URI to write the dataset to instead of the
    // task directory, so that Nextflow stages none of it (credentials from the environment).
    dataset = task.ext.dataset ?: "${prefix}.slaf"
    """
    slaf-convert commit \
        ${plan} \
        ${fragments} \
        --dataset ${dataset} \
        --threads ${task.cpus} \
        ${args}
    """

    stub:
    def args = task.ext.args ?: ''
    prefix = task.ext.prefix ?: "${meta.id}"
    dataset = task.ext.dataset ?: "${prefix}.slaf"
    """
    echo ${args}
    mkdir ${prefix}.slaf
    echo '{}' > ${prefix}.slaf/config.json
    echo '{}' > ${prefix}.slaf/_SLAF_COMPLETE.json
    """
}
