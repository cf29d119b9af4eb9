"""Test doubles users can run too: a fake OpenAI-compatible server for trying the judge offline."""
