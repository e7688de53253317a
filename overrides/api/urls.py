"""REST API routes for blocks, boosts and the audit trail (contract, Overrides)."""

urlpatterns: list = []
