"""servebench plugin SDK.

    from plugins import ApiPluginBase, DatasetPluginBase, register_api, register_dataset
    from engine.arguments import Arguments
"""
from plugins.base import ApiPluginBase, DatasetPluginBase, register_api, register_dataset

__all__ = ["ApiPluginBase", "DatasetPluginBase", "register_api", "register_dataset"]
