"""Reference applications: sender, receiver, classifiers, demo, and the TCP/email baselines."""
