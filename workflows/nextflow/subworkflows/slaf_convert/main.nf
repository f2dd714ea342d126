// Plan -> one staged shard task per shard (the count comes from plan at run time) -> commit.
// Commit reads no input file: the plan and the shards' outputs carry everything it needs.
include { SLAFCONVERT_PLAN   } from '../../modules/slafconvert/plan/main'
include { SLAFCONVERT_SHARD  } from '../../modules/slafconvert/shard/main'
include { SLAFCONVERT_COMMIT } from '../../modules/slafconvert/commit/main'

workflow SLAF_CONVERT {
    take:
    ch_manifest // channel: [ val(meta), path(manifest), [ path(inputs) ] ]

    main:
    SLAFCONVERT_PLAN(ch_manifest)

    // Each shard task gets the plan and the inputs staged as the plan task had them (inputs/N/NAME):
    // `shard --inputs .` reads them there, never through the plan task's directory.
    ch_shards = SLAFCONVERT_PLAN.out.plan
        .join(ch_manifest.map { meta, _manifest, inputs -> [ meta, inputs ] }, failOnMismatch: true)
        .flatMap { meta, plan, n, inputs ->
            def total = n.toInteger()
            (1..total).collect { i -> [ meta + [shard: "${i}-of-${total}", n_shards: total], plan, "${i}-of-${total}", inputs ] }
        }
    SLAFCONVERT_SHARD(ch_shards)

    // groupKey releases each dataset's group as soon as all its shards are in (not collect()).
    ch_commit = SLAFCONVERT_SHARD.out.fragments
        .map { meta, frag -> [ groupKey(meta.findAll { k, _v -> !(k in ['shard', 'n_shards']) }, meta.n_shards), frag ] }
        .groupTuple()
        .map { key, frags -> [ key.getGroupTarget(), frags.sort { f -> f.name } ] }
        .join(SLAFCONVERT_PLAN.out.plan.map { meta, plan, _n -> [ meta, plan ] }, failOnMismatch: true)
    SLAFCONVERT_COMMIT(ch_commit)

    emit:
    slaf    = SLAFCONVERT_COMMIT.out.slaf    // channel: [ val(meta), path("${prefix}.slaf") ]
    marker  = SLAFCONVERT_COMMIT.out.marker  // channel: [ val(meta), path(_SLAF_COMPLETE.json) ]
    // channel: [ val(meta), val(location) ]: "${prefix}.slaf", or the URI withName:
    // 'SLAFCONVERT_(PLAN|SHARD|COMMIT)' { ext.dataset = 's3://...' } builds it in (the shards
    // write into the store, commit commits there; slaf and marker stay empty: Nextflow
    // stages none of the dataset). ext.dataset on SLAFCONVERT_COMMIT alone uploads the
    // staged shards' dataset instead.
    dataset = SLAFCONVERT_COMMIT.out.dataset
}
