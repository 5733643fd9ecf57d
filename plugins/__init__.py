"""servegauge plugin SDK.

    from plugins import ApiPluginBase, DatasetPluginBase, register_api, register_dataset
    from engine.arguments import Arguments

parse_responses gets each payload as a `Payload` (plugins/payload.py): the
JSON text as a str, readable as bytes and as the parsed object too.
"""
from plugins.base import ApiPluginBase, DatasetPluginBase, register_api, register_dataset
from plugins.payload import Payload

__all__ = ["ApiPluginBase", "DatasetPluginBase", "Payload", "register_api", "register_dataset"]
