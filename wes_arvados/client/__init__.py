"""The client side of wes-arvados: what `wes-arvados run` needs, with none of the server's dependencies."""
