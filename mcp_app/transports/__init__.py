"""Transports: turn HTTP (or stdio) into JSON-RPC messages for the dispatcher, and answers back."""
