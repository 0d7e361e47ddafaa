"""Camera geometry in the project's conventions (OpenCV camera frame, integer pixel centres).

Modules: `transforms` (rigid transforms named by direction), `intrinsics` (resize/crop K),
`conventions` (every dataset's camera convention -> ours and back), `projection` (project,
unproject, rays, grid_sample coordinates), `warping` (MVSNet plane-sweep warp).
"""
