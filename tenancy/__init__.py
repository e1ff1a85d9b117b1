"""Tenants (the home-service companies using Huifang) and their API keys."""
