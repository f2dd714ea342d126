process SLAFCONVERT_SHARD {
    tag "${meta.id}:${shard}"
    label 'process_low'

    conda "${moduleDir}/environment.yml"
    container "${ workflow.containerEngine in ['singularity', 'apptainer'] && !task.ext.singularity_pull_docker_container ?
        'https://ghcr.io/slaf-convert/slaf-convert/sif:0.1.0' :
        'ghcr.io/slaf-convert/slaf-convert:0.1.0' }"

    input:
    tuple val(meta), path(plan), val(shard), path(inputs, stageAs: 'inputs/*')

    output:
    tuple val(meta), path("${prefix}.shard-${shard}"), emit: fragments
    tuple val("${task.process}"), val('slaf-convert'), eval("slaf-convert --version | sed 's/.* //'"), topic: versions, emit: versions_slafconvert

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    slaf-convert shard \
        ${plan} \
        --shard ${shard} \
        --inputs . \
        -o ${prefix}.shard-${shard} \
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
