cwlVersion: v1.2
class: CommandLineTool
doc: >
  Requires Docker; run with --no-container, cwltool refuses it as an unsupported
  requirement (exit 33) before starting any job, so Docker is never used.
requirements:
  DockerRequirement:
    dockerPull: debian:stable-slim
baseCommand: [echo, never runs]
inputs: []
outputs: []
