"""Architecture hyper-parameters of the published First Order Motion Model configs.

The values below are the ``model_params`` sections of the eight 256x256 config files
published with the original First Order Motion Model repository
(github.com/AliaksandrSiarohin/first-order-model, ``config/*.yaml``, MIT licence).
They keep the original YAML nesting and key names (``model_params`` -> ``common_params``,
``kp_detector_params``, ``generator_params`` -> ``dense_motion_params``,
``discriminator_params``), so a real config file and a preset parse through the same code.
"""

PRESETS: dict[str, dict] = {
    "vox-256": {
        "model_params": {
            "common_params": {
                "num_kp": 10,
                "num_channels": 3,
                "estimate_jacobian": True,
            },
            "kp_detector_params": {
                "temperature": 0.1,
                "block_expansion": 32,
                "max_features": 1024,
                "scale_factor": 0.25,
                "num_blocks": 5,
            },
            "generator_params": {
                "block_expansion": 64,
                "max_features": 512,
                "num_down_blocks": 2,
                "num_bottleneck_blocks": 6,
                "estimate_occlusion_map": True,
                "dense_motion_params": {
                    "block_expansion": 64,
                    "max_features": 1024,
                    "num_blocks": 5,
                    "scale_factor": 0.25,
                },
            },
            "discriminator_params": {
                "scales": [1],
                "block_expansion": 32,
                "max_features": 512,
                "num_blocks": 4,
                "sn": True,
            },
        },
    },
    "vox-adv-256": {
        "model_params": {
            "common_params": {
                "num_kp": 10,
                "num_channels": 3,
                "estimate_jacobian": True,
            },
            "kp_detector_params": {
                "temperature": 0.1,
                "block_expansion": 32,
                "max_features": 1024,
                "scale_factor": 0.25,
                "num_blocks": 5,
            },
            "generator_params": {
                "block_expansion": 64,
                "max_features": 512,
                "num_down_blocks": 2,
                "num_bottleneck_blocks": 6,
                "estimate_occlusion_map": True,
                "dense_motion_params": {
                    "block_expansion": 64,
                    "max_features": 1024,
                    "num_blocks": 5,
                    "scale_factor": 0.25,
                },
            },
            "discriminator_params": {
                "scales": [1],
                "block_expansion": 32,
                "max_features": 512,
                "num_blocks": 4,
                "use_kp": True,
            },
        },
    },
    "taichi-256": {
        "model_params": {
            "common_params": {
                "num_kp": 10,
                "num_channels": 3,
                "estimate_jacobian": True,
            },
            "kp_detector_params": {
                "temperature": 0.1,
                "block_expansion": 32,
                "max_features": 1024,
                "num_blocks": 5,
                "scale_factor": 0.25,
            },
            "generator_params": {
                "block_expansion": 64,
                "max_features": 512,
                "num_down_blocks": 2,
                "num_bottleneck_blocks": 6,
                "estimate_occlusion_map": True,
                "dense_motion_params": {
                    "block_expansion": 64,
                    "max_features": 1024,
                    "num_blocks": 5,
                    "scale_factor": 0.25,
                },
            },
            "discriminator_params": {
                "scales": [1],
                "block_expansion": 32,
                "max_features": 512,
                "num_blocks": 4,
            },
        },
    },
    "taichi-adv-256": {
        "model_params": {
            "common_params": {
                "num_kp": 10,
                "num_channels": 3,
                "estimate_jacobian": True,
            },
            "kp_detector_params": {
                "temperature": 0.1,
                "block_expansion": 32,
                "max_features": 1024,
                "num_blocks": 5,
                "scale_factor": 0.25,
            },
            "generator_params": {
                "block_expansion": 64,
                "max_features": 512,
                "num_down_blocks": 2,
                "num_bottleneck_blocks": 6,
                "estimate_occlusion_map": True,
                "dense_motion_params": {
                    "block_expansion": 64,
                    "max_features": 1024,
                    "num_blocks": 5,
                    "scale_factor": 0.25,
                },
            },
            "discriminator_params": {
                "scales": [1],
                "block_expansion": 32,
                "max_features": 512,
                "num_blocks": 4,
                "use_kp": True,
            },
        },
    },
    "mgif-256": {
        "model_params": {
            "common_params": {
                "num_kp": 10,
                "num_channels": 3,
                "estimate_jacobian": True,
            },
            "kp_detector_params": {
                "temperature": 0.1,
                "block_expansion": 32,
                "max_features": 1024,
                "scale_factor": 0.25,
                "num_blocks": 5,
                "single_jacobian_map": True,
            },
            "generator_params": {
                "block_expansion": 64,
                "max_features": 512,
                "num_down_blocks": 2,
                "num_bottleneck_blocks": 6,
                "estimate_occlusion_map": True,
                "dense_motion_params": {
                    "block_expansion": 64,
                    "max_features": 1024,
                    "num_blocks": 5,
                    "scale_factor": 0.25,
                },
            },
            "discriminator_params": {
                "scales": [1],
                "block_expansion": 32,
                "max_features": 512,
                "num_blocks": 4,
                "sn": True,
            },
        },
    },
    "bair-256": {
        "model_params": {
            "common_params": {
                "num_kp": 10,
                "num_channels": 3,
                "estimate_jacobian": True,
            },
            "kp_detector_params": {
                "temperature": 0.1,
                "block_expansion": 32,
                "max_features": 1024,
                "scale_factor": 0.25,
                "num_blocks": 5,
            },
            "generator_params": {
                "block_expansion": 64,
                "max_features": 512,
                "num_down_blocks": 2,
                "num_bottleneck_blocks": 6,
                "estimate_occlusion_map": True,
                "dense_motion_params": {
                    "block_expansion": 64,
                    "max_features": 1024,
                    "num_blocks": 5,
                    "scale_factor": 0.25,
                },
            },
            "discriminator_params": {
                "scales": [1],
                "block_expansion": 32,
                "max_features": 512,
                "num_blocks": 4,
                "sn": True,
            },
        },
    },
    "fashion-256": {
        "model_params": {
            "common_params": {
                "num_kp": 10,
                "num_channels": 3,
                "estimate_jacobian": True,
            },
            "kp_detector_params": {
                "temperature": 0.1,
                "block_expansion": 32,
                "max_features": 1024,
                "scale_factor": 0.25,
                "num_blocks": 5,
            },
            "generator_params": {
                "block_expansion": 64,
                "max_features": 512,
                "num_down_blocks": 2,
                "num_bottleneck_blocks": 6,
                "estimate_occlusion_map": True,
                "dense_motion_params": {
                    "block_expansion": 64,
                    "max_features": 1024,
                    "num_blocks": 5,
                    "scale_factor": 0.25,
                },
            },
            "discriminator_params": {
                "scales": [1],
                "block_expansion": 32,
                "max_features": 512,
                "num_blocks": 4,
            },
        },
    },
    "nemo-256": {
        "model_params": {
            "common_params": {
                "num_kp": 10,
                "num_channels": 3,
                "estimate_jacobian": True,
            },
            "kp_detector_params": {
                "temperature": 0.1,
                "block_expansion": 32,
                "max_features": 1024,
                "scale_factor": 0.25,
                "num_blocks": 5,
            },
            "generator_params": {
                "block_expansion": 64,
                "max_features": 512,
                "num_down_blocks": 2,
                "num_bottleneck_blocks": 6,
                "estimate_occlusion_map": True,
                "dense_motion_params": {
                    "block_expansion": 64,
                    "max_features": 1024,
                    "num_blocks": 5,
                    "scale_factor": 0.25,
                },
            },
            "discriminator_params": {
                "scales": [1],
                "block_expansion": 32,
                "max_features": 512,
                "num_blocks": 4,
                "sn": True,
            },
        },
    },
}
