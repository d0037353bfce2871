"""Image bytes for the apps: format sniffing, decode checks, re-encoding and sample images."""
