process SLAFCONVERT_COMMIT {
    tag "$meta.id"
    label 'process_single'

    conda "${moduleDir}/environment.yml"
    container "${ workflow.containerEngine in ['singularity', 'apptainer'] && !task.ext.singularity_pull_docker_container ?
        'https://ghcr.io/slaf-convert/slaf-convert/sif:0.1.0' :
        'ghcr.io/slaf-convert/slaf-convert:0.1.0' }"

    input:
    tuple val(meta), path(fragments, stageAs: 'shards/*'), path(plan)

    output:
    tuple val(meta), path("${prefix}.slaf"), emit: slaf
    tuple val(meta), path("${prefix}.slaf/_SLAF_COMPLETE.json"), emit: marker
    tuple val("${task.process}"), val('slaf-convert'), eval("slaf-convert --version | sed 's/.* //'"), topic: versions, emit: versions_slafconvert

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    slaf-convert commit \
        ${plan} \
        ${fragments} \
        --dataset ${prefix}.slaf \
        --threads ${task.cpus} \
        ${args}
    """

    stub:
    def args = task.ext.args ?: ''
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    echo ${args}
    mkdir ${prefix}.slaf
    echo '{}' > ${prefix}.slaf/config.json
    echo '{}' > ${prefix}.slaf/_SLAF_COMPLETE.json
    """
}
