"""Fine-tuning data from the agent's own conversations.

`examples` turns saved sessions into per-turn Harmony training examples with
loss masks, `chat_format` writes and reads them as chat messages, `clean`
drops broken text and duplicates, `export` writes the JSONL file and its report.
"""

from agent.training.export import ExportReport, export_sft

__all__ = ["ExportReport", "export_sft"]
