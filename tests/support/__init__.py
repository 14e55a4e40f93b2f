"""Test support: throwaway servers, a live web server, helpers."""
