"""The CI/CD pipeline: workflows, Jenkinsfile, and the commands they call."""
