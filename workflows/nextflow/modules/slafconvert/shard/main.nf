process SLAFCONVERT_SHARD {
    tag "${meta.id}:${shard}"
    label 'process_low'

    // One image for every engine: Singularity and Apptainer pull it as docker://; a local SIF
    // replaces it with withName: 'SLAFCONVERT_.*' { container = '/path/to/slaf-convert_0.1.0.sif' }.
    container 'ghcr.io/slaf-convert/slaf-convert:0.1.0'

    input:
    tuple val(meta), path(plan), val(shard), path(inputs, stageAs: 'inputs/?/*')

    output:
    tuple val(meta), path("${prefix}.shard-${shard}"), emit: fragments
    tuple val("${task.process}"), val('slaf-convert'), eval("slaf-convert --version | sed 's/.* //'"), topic: versions, emit: versions_slafconvert

    when:
    task.ext.when == null || task.ext.when

    script:
    // No conda package exists yet: refuse -profile conda/mamba with a clear message instead
    // of a solver failure (nf-core's guard for container-only modules).
    if (workflow.profile.tokenize(',').intersect(['conda', 'mamba']).size() >= 1) {
        error "SLAFCONVERT_SHARD does not support Conda yet: use Docker, Singularity or Apptainer (-profile docker|singularity|apptainer)."
    }
    def args = task.ext.args ?: ''
    prefix = task.ext.prefix ?: "${meta.id}"
    // task.ext.dataset, an s3://, gs:// or az:// URI (the one SLAFCONVERT_PLAN got): the plan
    // names it, so the shard writes its fragments into the store itself and its output holds
    // only the receipt. Otherwise the fragments are staged in the task directory.
    def placement = task.ext.dataset ?
        "--shared-target --receipt ${prefix}.shard-${shard}/receipt.json" :
        "-o ${prefix}.shard-${shard}"
    """
    slaf-convert shard \
        ${plan} \
        --shard ${shard} \
        --inputs . \
        ${placement} \
        --threads ${task.cpus} \
        ${args}
    """

    stub:
    def args = task.ext.args ?: ''
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    echo ${args}
    mkdir ${prefix}.shard-${shard}
    echo '{}' > ${prefix}.shard-${shard}/receipt.json
    """
}
