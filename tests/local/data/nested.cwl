cwlVersion: v1.2
class: Workflow
doc: Runs workflow.cwl as a subworkflow next to a tool step of its own.
requirements:
  SubworkflowFeatureRequirement: {}
inputs:
  message: string
  words: string[]
outputs:
  count:
    type: int
    outputSource: inner/count
  extra:
    type: File
    outputSource: outer_echo/result
steps:
  inner:
    run: workflow.cwl
    in:
      message: message
      words: words
    out: [count]
  outer_echo:
    run: echo.cwl
    in:
      message:
        default: outer
    out: [result]
