"""Optical flow: estimators (DIS, Farneback, RAFT), the one-flow-per-frame convention, the colour encoding."""
from hfan.flow.encoding import flow_to_hfan_image, flow_to_image, flows_to_images
from hfan.flow.estimators import ESTIMATORS, FlowEstimator, build_flow_estimator
from hfan.flow.video import flow_partner, flows_at, video_flows

__all__ = ["ESTIMATORS", "FlowEstimator", "build_flow_estimator", "flow_partner", "flow_to_hfan_image", "flow_to_image",
           "flows_at", "flows_to_images", "video_flows"]
