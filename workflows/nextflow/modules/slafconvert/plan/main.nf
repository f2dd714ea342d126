process SLAFCONVERT_PLAN {
    tag "$meta.id"
    label 'process_single'

    // One image for every engine: Singularity and Apptainer pull it as docker://; a local SIF
    // replaces it with withName: 'SLAFCONVERT_.*' { container = '/path/to/slaf-convert_0.1.0.sif' }.
    container 'ghcr.io/slaf-convert/slaf-convert:0.1.0'

    input:
    tuple val(meta), path(manifest), path(inputs, stageAs: 'inputs/?/*')

    output:
    tuple val(meta), path("${prefix}.plan.json"), eval("cat ${prefix}.n_shards"), emit: plan
    tuple val("${task.process}"), val('slaf-convert'), eval("slaf-convert --version | sed 's/.* //'"), topic: versions, emit: versions_slafconvert

    when:
    task.ext.when == null || task.ext.when

    script:
    // No conda package exists yet: refuse -profile conda/mamba with a clear message instead
    // of a solver failure (nf-core's guard for container-only modules).
    if (workflow.profile.tokenize(',').intersect(['conda', 'mamba']).size() >= 1) {
        error "SLAFCONVERT_PLAN does not support Conda yet: use Docker, Singularity or Apptainer (-profile docker|singularity|apptainer)."
    }
    def args = task.ext.args ?: ''
    prefix = task.ext.prefix ?: "${meta.id}"
    // task.ext.dataset: an s3://, gs:// or az:// URI for the dataset; shards given the same
    // ext.dataset write into it, and SLAFCONVERT_COMMIT commits there.
    def dataset = task.ext.dataset ?: "${prefix}.slaf"
    """
    slaf-convert plan \
        ${manifest} \
        -o ${prefix}.plan.json \
        --dataset ${dataset} \
        --print-shards \
        --threads ${task.cpus} \
        ${args} \
        > ${prefix}.n_shards
    """

    stub:
    def args = task.ext.args ?: ''
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    echo ${args}
    echo '{}' > ${prefix}.plan.json
    echo 2 > ${prefix}.n_shards
    """
}
