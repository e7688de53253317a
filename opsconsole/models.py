"""Project-wide models (API keys arrive with the serving issue).

The module exists so Django sends this app's post_migrate signal, which keeps the
role groups in sync (see apps.py).
"""
