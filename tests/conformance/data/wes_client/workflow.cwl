cwlVersion: v1.2
class: Workflow
doc: |
  Greets someone loudly, then counts the bytes of the greeting.  Both steps
  run tools sent to the server as attachments (tools/).
requirements:
  StepInputExpressionRequirement: {}
inputs:
  name: string
outputs:
  shouted:
    type: File
    outputSource: shout/shouted
  size:
    type: File
    outputSource: count/size
steps:
  shout:
    run: tools/shout.cwl
    in:
      message:
        source: name
        valueFrom: hello $(self)
    out: [shouted]
  count:
    run: tools/count.cwl
    in:
      file: shout/shouted
    out: [size]
