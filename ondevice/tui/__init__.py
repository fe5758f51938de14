"""The Textual terminal UI (compare, chat, model picker)."""
